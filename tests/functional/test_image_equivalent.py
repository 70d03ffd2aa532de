"""What the inference image holds is enough: a fresh Python 3.12 venv with only
packaging/inference/requirements.txt installed (and slimmed like the image) runs the handler
on the event fixtures. It also proves the runtime never needs torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lambdaforge.bundle.build import image_env
from tests.conftest import EVENTS

ROOT = Path(__file__).resolve().parents[2]
IMAGE_PYTHON = ROOT / ".venv-image" / "bin" / "python"

RUNNER = r"""
import json, sys, time
t0 = time.perf_counter()
sys.path[:0] = [sys.argv[1], sys.argv[2]]  # functions/inference (LAMBDA_TASK_ROOT) and the lambdaforge source
import app
from lambdaforge.local.context import LocalLambdaContext
out = {}
for path in sys.argv[3:]:
    r = app.lambda_handler(json.load(open(path)), LocalLambdaContext(function_name="inference"))
    out[path.rsplit("/", 1)[-1]] = {"status": r["statusCode"], "body": r["body"]}
heavy = [m for m in ("torch", "transformers", "huggingface_hub", "onnx", "sklearn") if m in sys.modules]
print(json.dumps({"results": out, "heavy": heavy, "seconds": time.perf_counter() - t0}))
"""

EXPECTED_DIGITS = {"apigw_health.json": 200, "apigw_model.json": 200, "apigw_openapi.json": 200,
                   "apigw_docs.json": 200, "apigw_predict_digits.json": 200, "apigw_predict_digits_b64.json": 200,
                   "apigw_predict_text.json": 422, "apigw_predict_malformed.json": 400,
                   "apigw_predict_empty_batch.json": 422, "apigw_unknown_route.json": 404}


def run_in_image(model: Path, events: list[str]) -> dict[str, object]:
    if not IMAGE_PYTHON.exists():
        pytest.fail(f"{IMAGE_PYTHON} is missing: `make image-venv` builds it (make test does)")
    env = {**image_env(ROOT, "inference"),  # what the Dockerfile's ENV sets in the image
           "MODEL_DIR": str(model), "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_NAMESPACE": "lf",
           "POWERTOOLS_LOG_LEVEL": "ERROR", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([str(IMAGE_PYTHON), "-c", RUNNER, str(ROOT / "functions" / "inference"), str(ROOT / "src"),
                           *[str(EVENTS / e) for e in events]], capture_output=True, text=True, env=env, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_the_image_venv_has_only_the_runtime_dependencies() -> None:
    if not IMAGE_PYTHON.exists():
        pytest.fail("`make image-venv` first")
    out = subprocess.run([str(IMAGE_PYTHON), "-c", "import sys; print(sys.version_info[:2])"], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "(3, 12)"  # the Lambda runtime's Python
    for module in ("torch", "transformers", "onnx", "huggingface_hub", "sklearn"):
        proc = subprocess.run([str(IMAGE_PYTHON), "-c", f"import {module}"], capture_output=True, check=False)
        assert proc.returncode != 0, f"{module} is importable in the image venv"
    # the service models the runtime needs survived slimming (s3:// models, the registry, X-Ray sampling)
    clients = ("import boto3\nfor s in ('s3', 'dynamodb', 'xray', 'sts'):\n"
               "    boto3.client(s, region_name='us-east-1', endpoint_url='http://127.0.0.1:9')\nprint('ok')")
    proc = subprocess.run([str(IMAGE_PYTHON), "-c", clients], capture_output=True, text=True, check=False)
    assert proc.stdout.strip() == "ok", proc.stderr


def test_handler_runs_the_event_fixtures_with_the_digits_model(digits_int8: Path) -> None:
    result = run_in_image(digits_int8, sorted(EXPECTED_DIGITS))
    statuses = {name: r["status"] for name, r in result["results"].items()}  # type: ignore[attr-defined]
    assert statuses == EXPECTED_DIGITS
    body = json.loads(result["results"]["apigw_predict_digits.json"]["body"])  # type: ignore[index]
    assert [p["label"] for p in body["predictions"]] == ["0", "0"]
    assert result["heavy"] == []


def test_handler_runs_the_text_event_with_the_text_model(text_int8: Path) -> None:
    result = run_in_image(text_int8, ["apigw_predict_text.json", "apigw_health.json"])
    text = result["results"]["apigw_predict_text.json"]  # type: ignore[index]
    assert text["status"] == 200
    assert [p["label"] for p in json.loads(text["body"])["predictions"]] == ["billing", "shipping"]
    assert result["heavy"] == []


def test_runtime_imports_where_torch_cannot_be_imported(digits_int8: Path) -> None:
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'transformers', 'sklearn'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from lambdaforge.runtime import get_predictor\n"
        f"p = get_predictor({str(digits_int8)!r})\n"
        "print(p.predict([[0] * 64])[0].label)\n"
        "print(sorted(m for m in sys.modules if m.startswith(('torch', 'transformers'))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
