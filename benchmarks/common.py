"""Helpers shared by the benchmarks: training models through the real entry point, writing results."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def train_and_quantize(recipe: str, workdir: Path, hps: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """A trained fp32 model directory and its auto-quantized one, made the way users make them."""
    fp32, int8 = workdir / recipe / "fp32", workdir / recipe / "int8"
    if not (fp32 / "manifest.json").is_file():
        cmd = [sys.executable, "-m", "lambdaforge.cli", "train", "--recipe", recipe, "--out", str(fp32), "--force"]
        for key, value in (hps or {}).items():
            cmd += ["--hp", f"{key}={value}"]
        subprocess.run(cmd, check=True)
    if not (int8 / "manifest.json").is_file():
        subprocess.run([sys.executable, "-m", "lambdaforge.cli", "quantize", "--model", str(fp32), "--out",
                        str(int8), "--force"], check=True)
    return fp32, int8


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {path}")
