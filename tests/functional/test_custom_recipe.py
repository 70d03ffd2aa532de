"""The README's bring-your-own-model example trains, exports, quantizes and serves like the built-ins."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lambdaforge.artifact import open_model_dir
from lambdaforge.quantize import quantize_model_dir
from lambdaforge.runtime import Predictor, fetch

ROOT = Path(__file__).resolve().parents[2]


def test_the_iris_example_recipe_goes_through_the_whole_toolchain(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "examples")}
    out = tmp_path / "iris"
    proc = subprocess.run([sys.executable, "-m", "lambdaforge.cli", "train", "--recipe", "iris_recipe:IrisRecipe",
                           "--out", str(out), "--hp", "hidden=24"], env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    md = open_model_dir(out)
    assert md.manifest.recipe == "iris" and md.manifest.metrics["accuracy"] >= 0.85
    assert md.manifest.training.hyperparameters["hidden"] == 24
    report = quantize_model_dir(md, tmp_path / "int8").report
    assert report.gate_passed, report.gate_reason
    predictor = Predictor(fetch(str(tmp_path / "int8")))
    (prediction,) = predictor.predict([[5.1, 3.5, 1.4, 0.2]])
    assert prediction.label == "setosa"
