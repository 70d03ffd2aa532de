"""What the quantize image holds is enough: a fresh Python 3.12 venv with only
packaging/quantize/requirements.txt installed (and slimmed like the image) quantizes the text model,
transformer fusions included, without torch. A slimming rule that removes something the fusions
import (onnxruntime/tools/symbolic_shape_infer.py did) fails here, not in the quantize Lambda."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
QUANTIZE_PYTHON = ROOT / ".venv-quantize" / "bin" / "python"

RUNNER = r"""
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from lambdaforge.artifact import open_model_dir
from lambdaforge.quantize import QuantizeConfig, quantize_model_dir
out = quantize_model_dir(open_model_dir(sys.argv[2]), Path(sys.argv[3]), QuantizeConfig(latency_runs=5))
heavy = [m for m in ("torch", "transformers", "sklearn", "scipy") if m in sys.modules]
print(json.dumps({"chosen": out.report.chosen, "passed": out.report.gate_passed, "heavy": heavy,
                  "candidates": {c.name: {"passed": c.passed, "reason": c.reason, "fused": c.fused_ops}
                                 for c in out.report.candidates}}))
"""


def test_the_quantize_image_fuses_and_quantizes_the_text_model(text_model: Path, tmp_path: Path) -> None:
    if not QUANTIZE_PYTHON.exists():
        pytest.fail(f"{QUANTIZE_PYTHON} is missing: `make quantize-venv` builds it (make test does)")
    proc = subprocess.run([str(QUANTIZE_PYTHON), "-c", RUNNER, str(ROOT / "src"), str(text_model),
                           str(tmp_path / "int8")], capture_output=True, text=True, timeout=900, check=False,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["heavy"] == [] and result["passed"], result
    cands = result["candidates"]
    for name in ("fp32-fused", "dynamic", "dynamic-u8u8", "dynamic-fused"):
        assert not cands[name]["reason"].startswith("failed"), (name, cands[name])
    assert cands["fp32-fused"]["passed"] and cands["fp32-fused"]["fused"]["Attention"] == 6, cands["fp32-fused"]
    assert cands["dynamic-fused"]["fused"].get("QAttention") == 6, cands["dynamic-fused"]
