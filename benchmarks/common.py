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


# The instruction sets that decide INT8 and fp32 GEMM speed and results (x86: AVX2, AVX-512, VNNI, AMX;
# arm64: SDOT is `asimddp`); the rest of /proc/cpuinfo's flags say nothing about these models.
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
             "avx512_bf16", "amx_int8", "amx_bf16", "asimd", "asimddp", "sve", "i8mm")


def machine() -> dict[str, Any]:
    """The host, with what decides the figures: CPU vendor, family, model and ISA flags."""
    import os

    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() not in fields:
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    return {"cpu": fields.get("model name", platform.processor() or "unknown"),
            "cpu_vendor": fields.get("vendor_id", fields.get("CPU implementer", "")),
            "cpu_family": fields.get("cpu family", ""), "cpu_model": fields.get("model", fields.get("CPU part", "")),
            "isa": [f for f in ISA_FLAGS if f in flags], "machine": platform.machine(),
            "cores": os.cpu_count(), "python": platform.python_version(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {path}")


def read_json(path: Path) -> dict[str, Any]:
    """A results file written by `write_json` (for re-plotting without re-running a benchmark)."""
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (files only, no display), imported when a plot is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def machine_line(m: dict[str, Any]) -> str:
    """The host in one line for a figure's footer: CPU, family/model, ISA flags that matter, cores."""
    family = "/".join(str(m[k]) for k in ("cpu_family", "cpu_model") if m.get(k))
    isa = " ".join(m.get("isa") or [])
    parts = [str(m.get("cpu", "unknown CPU")), f"family/model {family}" if family else "",
             f"ISA: {isa}" if isa else "", f"{m['cores']} cores" if m.get("cores") else ""]
    return ", ".join(p for p in parts if p)
