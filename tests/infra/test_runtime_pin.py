"""The dev venv runs the onnxruntime the images pin: the local gate must score, and the benchmarks time, the
runtime that serves, and a graph pre-optimized here must be one the image does not re-optimize."""

from __future__ import annotations

import os
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path

from lambdaforge.training.lock import pins

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ("inference", "quantize")


def _pins(path: Path) -> set[str]:
    """Every onnxruntime version a requirements file pins (the training lock's parser reads any of them)."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("onnxruntime==")]
    return {pins(line)["onnxruntime"] for line in lines}


def test_every_image_file_pins_one_and_the_same_onnxruntime() -> None:
    files = [ROOT / "packaging" / image / name for image in IMAGES
             for name in ("requirements.in", "requirements.txt", "requirements-arm64.txt")]
    # the training image exports and checks parity with onnxruntime too: the same runtime there
    files.append(ROOT / "src/lambdaforge/training/requirements.txt")
    pins = {f.relative_to(ROOT).as_posix(): _pins(f) for f in files}
    assert all(len(p) == 1 for p in pins.values()), pins
    assert len(set().union(*pins.values())) == 1, pins


def test_the_dev_venv_runs_the_images_onnxruntime() -> None:
    (pin,) = _pins(ROOT / "packaging/inference/requirements.in")
    assert version("onnxruntime") == pin, (
        f"the dev venv has onnxruntime {version('onnxruntime')}, the images {pin}: `rm .venv/.installed && make venv`")


def test_the_makefile_installs_that_pin() -> None:
    make = shutil.which("make")
    assert make, "make is how the venv is built: it must be on PATH"
    (pin,) = _pins(ROOT / "packaging/inference/requirements.in")
    # ask make itself what it would install, rather than grepping the recipe
    # a child of `make test` must not inherit its flags (--debug or --trace would print to stdout)
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    out = subprocess.run([make, "-s", "--no-print-directory", "-C", str(ROOT),
                          "--eval", "print-ort: ; @echo $(ORT)", "print-ort"],
                         capture_output=True, text=True, check=True, env=env).stdout.strip().splitlines()
    assert out and out[-1] == pin, out
    assert '"onnxruntime==$(ORT)"' in (ROOT / "Makefile").read_text()
