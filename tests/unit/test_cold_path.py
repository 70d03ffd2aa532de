"""What the inference function's cold start imports, and that what it leaves out changes no answer.

The way to a first prediction builds no pydantic model: the manifest is read by
`lambdaforge.runtime.modelfiles` (pydantic's `lambdaforge.artifact` only for a manifest it cannot
vouch for), and a plainly valid request (`http.plain_request`) is served without the resolver's
validation. These tests pin what is (not) imported, never how long it takes, and hold the fast
readers to the pydantic ones they stand in for.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lambdaforge import artifact
from lambdaforge.artifact import manifest as pyd
from lambdaforge.runtime import http, modelfiles
from lambdaforge.runtime.errors import RuntimeModelError
from lambdaforge.runtime.schemas import PredictRequest
from lambdaforge.runtime.source import fetch

ROOT = Path(__file__).resolve().parents[2]
# Modules the cold path must not import: pydantic itself, our pydantic models, Powertools' validation
NOT_ON_THE_COLD_PATH = ("pydantic", "pydantic_core", "lambdaforge.artifact", "lambdaforge.runtime.schemas",
                        "lambdaforge.runtime.contract",
                        "aws_lambda_powertools.event_handler.middlewares.openapi_validation",
                        "aws_lambda_powertools.event_handler.openapi.compat",
                        "aws_lambda_powertools.event_handler.openapi.params", "torch")


def tiny_model(root: Path, **manifest_fields: Any) -> Path:
    """A real two-label ONNX classifier over 4 numbers, in a model directory written by `write_manifest`."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    root.mkdir(parents=True, exist_ok=True)
    weights = numpy_helper.from_array(np.array([[1, -1], [2, 0], [0, 3], [-1, 1]], dtype=np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["logits"])], "tiny",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(root / "model.onnx"))
    np.savez(root / "eval.npz", x=np.array([[1, 2, 3, 4]], dtype=np.float32), y=np.array([1]))
    (root / "quantization_report.json").write_text("{}")
    fields: dict[str, Any] = {
        "recipe": "tiny", "inputs": (pyd.TensorSpec(name="x", dtype="float32", shape=("batch", 4)),),
        "outputs": (pyd.TensorSpec(name="logits", dtype="float32", shape=("batch", 2)),), "labels": ("no", "yes"),
        "preprocessing": pyd.Preprocessing(kind="tensor"),
        "limits": pyd.InputLimits(max_batch=8, value_min=-10.0, value_max=10.0),
        "metrics": {"accuracy": 0.75},
        "training": pyd.TrainingInfo(recipe="tiny", job_name="tiny-1", dataset_version="d1", hyperparameters={"lr": 1}),
        "quantization": pyd.QuantizationInfo(mode="auto", chosen="dynamic", source_sha256="0" * 64,
                                             scheme="u8s8-reduce-range", host_isa="avx2"),
        **manifest_fields}
    artifact.write_manifest(root, pyd.Manifest(**fields))
    return root


def dumped(value: Any) -> Any:
    """A fast-reader value in the shape pydantic's model_dump() gives (records as dicts, nested)."""
    if isinstance(value, modelfiles._Record):
        return {k: dumped(v) for k, v in value.model_dump().items()}
    if isinstance(value, tuple):
        return tuple(dumped(v) for v in value)
    if isinstance(value, dict):
        return {k: dumped(v) for k, v in value.items()}
    return value


# --- the manifest reader
def test_the_fast_reader_has_the_pydantic_models_fields_in_their_order() -> None:
    models = {"TensorSpec": pyd.TensorSpec, "InputLimits": pyd.InputLimits, "Preprocessing": pyd.Preprocessing,
              "TrainingInfo": pyd.TrainingInfo, "QuantizationInfo": pyd.QuantizationInfo, "Manifest": pyd.Manifest}
    for name, model in models.items():
        assert modelfiles.FIELDS[name] == tuple(model.model_fields), name
        assert getattr(modelfiles, name).__slots__ == tuple(model.model_fields), name
    assert modelfiles.MANIFEST_NAME == pyd.MANIFEST_NAME
    assert modelfiles.SUPPORTED_SCHEMA_VERSIONS == pyd.SUPPORTED_SCHEMA_VERSIONS
    from lambdaforge.artifact import modeldir

    assert modelfiles.MAX_MANIFEST_BYTES == modeldir.MAX_MANIFEST_BYTES


def test_a_written_manifest_reads_the_same_without_pydantic(tmp_path: Path) -> None:
    for name, extra in {"full": {}, "text": {"preprocessing": pyd.Preprocessing(kind="text", tokenizer="eval.npz",
                                                                                  max_tokens=16)},
                        "defaults": {"quantization": None, "metrics": {}, "limits": pyd.InputLimits()}}.items():
        root = tiny_model(tmp_path / name, **extra)
        fast, full = modelfiles.open_model_dir(root), artifact.open_model_dir(root)
        assert isinstance(fast, modelfiles.ModelDir), name
        assert dumped(fast.manifest.model_dump()) == full.manifest.model_dump(), name
        assert fast.manifest.referenced_files() == full.manifest.referenced_files()
        assert fast.model_path == full.model_path


def rewrite(root: Path, change: Any) -> Path:
    raw = json.loads((root / "manifest.json").read_text())
    change(raw)
    (root / "manifest.json").write_text(json.dumps(raw))
    return root


@pytest.mark.parametrize("case", ["int for a float", "unknown field", "bad digest", "no created_at", "string int",
                                  "labels not a list", "text without tokenizer", "path outside", "date 30 Feb"])
def test_what_the_fast_reader_cannot_vouch_for_pydantic_decides(tmp_path: Path, case: str) -> None:
    """Coerced or refused, the answer (or the error, word for word) is the pydantic reader's."""
    changes = {
        "int for a float": lambda m: m["limits"].update(value_min=0),
        "unknown field": lambda m: m["quantization"].update(newer_field="x"),
        "bad digest": lambda m: m["files"].update({"eval.npz": "f" * 64}),
        "no created_at": lambda m: m.pop("created_at"),
        "string int": lambda m: m["limits"].update(max_batch="8"),
        "labels not a list": lambda m: m.update(labels={"a": 1}),
        "text without tokenizer": lambda m: m["preprocessing"].update(kind="text"),
        "path outside": lambda m: m["files"].update({"../x": "0" * 64}),
        "date 30 Feb": lambda m: m.update(created_at="2026-02-30T00:00:00Z"),
    }
    root = rewrite(tiny_model(tmp_path / "m"), changes[case])
    try:
        expected: Any = artifact.open_model_dir(root)
    except artifact.ArtifactError as exc:
        expected = exc
    if isinstance(expected, Exception):
        with pytest.raises(type(expected)) as raised:
            modelfiles.open_model_dir(root)
        assert str(raised.value) == str(expected)
        with pytest.raises(RuntimeModelError, match="failed verification"):
            fetch(str(root))
    else:
        got = modelfiles.open_model_dir(root)
        assert isinstance(got, artifact.ModelDir)  # pydantic's reading, coercions included
        same = {"created_at"} if case == "no created_at" else set()  # pydantic's default: now
        assert got.manifest.model_dump(exclude=same) == expected.manifest.model_dump(exclude=same)


def test_a_changed_file_is_refused_as_before(tmp_path: Path) -> None:
    root = tiny_model(tmp_path / "m")
    (root / "eval.npz").write_bytes(b"changed")
    with pytest.raises(artifact.ChecksumMismatchError, match="sha256 mismatch"):
        modelfiles.open_model_dir(root)
    (root / "eval.npz").unlink()
    with pytest.raises(artifact.MissingFileError):
        modelfiles.open_model_dir(root)


# --- plain requests
def event(body: Any, *, content_type: str | None = "application/json", b64: bool = False) -> dict[str, Any]:
    text = body if isinstance(body, str) else json.dumps(body)
    return {"rawPath": "/predict", "requestContext": {"http": {"method": "POST"}},
            "headers": {"content-type": content_type} if content_type else {},
            "body": base64.b64encode(text.encode()).decode() if b64 else text, "isBase64Encoded": b64}


PLAIN = [{"instances": ["a"]}, {"instances": ["a", "b"], "top_k": 1}, {"instances": [[1, 2, 3, 4]], "top_k": 20},
         {"instances": [[[1], [2]], "mixed", []]}, {"top_k": 3, "instances": ["x"]}]
NOT_PLAIN = [{"instances": ["a"], "top_k": 3.0}, {"instances": ["a"], "top_k": True},
             {"instances": ["a"], "top_k": "3"}, {"instances": ["a"], "top_k": 0}, {"instances": ["a"], "top_k": 21},
             {"instances": ["a"], "top_k": None},
             {"instances": []}, {"instances": [1]}, {"instances": [None]}, {"instances": [{"a": 1}]},
             {"instances": "a"}, {"instances": ["a"], "extra": 1}, {"top_k": 3}, [{"instances": ["a"]}], None, 3, "a",
             {"instances": [True]}]


def test_plain_requests_are_what_the_model_takes_unchanged() -> None:
    for body in PLAIN:
        plain = http.plain_request(event(body))
        assert plain is not None, body
        validated = PredictRequest.model_validate(body)
        assert plain == {"instances": validated.instances, "top_k": validated.top_k}, body
        assert http.plain_request(event(body, b64=True)) == plain
        assert http.plain_request(event(body, content_type=None)) == plain


def test_anything_else_is_left_to_validation() -> None:
    for body in NOT_PLAIN:
        assert http.plain_request(event(body)) is None, body
    for raw in ["", "{", '{"instances": ["a"]} x', '{"instances": [1e309]}', '{"instances": ["\\ud800"]}']:
        assert http.plain_request(event(raw)) is None, raw
    for content_type in ["text/plain", "application/json; charset=utf-8", ";charset=utf-8", "Application/JSON"]:
        assert http.plain_request(event({"instances": ["a"]}, content_type=content_type)) is None, content_type


# --- the handler
HANDLER = r"""
import json, sys
sys.path[:0] = [sys.argv[1]]
import app
from lambdaforge.local.context import LocalLambdaContext
from lambdaforge.local.gateway import http_event

def call(body, resolver=None):
    event = http_event("POST", "/predict", {"content-type": "application/json"}, json.dumps(body).encode())
    if resolver is None:
        return app.lambda_handler(event, LocalLambdaContext(function_name="t"))
    return resolver.resolve(event, LocalLambdaContext(function_name="t"))

first = call({"instances": [[1, 2, 3, 4]], "top_k": 2})
cold = sorted(m for m in sys.modules if m.startswith(tuple(sys.argv[2].split(","))))
plain = [call(b) for b in json.loads(sys.argv[3])]
validated = [call(b, app.validating()) for b in json.loads(sys.argv[3])]
coerced = call({"instances": [[1, 2, 3, 4]], "top_k": 2.0})
print(json.dumps({"first": first, "cold": cold, "plain": plain, "validated": validated, "coerced": coerced}))
"""


def test_the_cold_path_builds_no_pydantic_model_and_answers_as_validation_would(tmp_path: Path) -> None:
    model = tiny_model(tmp_path / "m")
    bodies = [{"instances": [[1, 2, 3, 4]]}, {"instances": [[0.5] * 4, [-1, 0, 1, 2]], "top_k": 1},
              {"instances": [[1, 2, 3, 40]]}, {"instances": ["text"]}, {"instances": [[1, 2]] * 9}]
    env = {"MODEL_URI": str(model), "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "true",
           "POWERTOOLS_LOG_LEVEL": "ERROR", "POWERTOOLS_SERVICE_NAME": "inference", "LAMBDAFORGE_THREADS": "1",
           "PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", HANDLER, str(ROOT / "functions" / "inference"),
                           ",".join(NOT_ON_THE_COLD_PATH), json.dumps(bodies)],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["first"]["statusCode"] == 200, out["first"]
    assert out["cold"] == []  # after import, model load and the first prediction
    statuses = [a["statusCode"] for a in out["plain"]]
    assert statuses == [200, 200, 422, 422, 422], out["plain"]  # out of range, a string, too many: the model's 422
    for fast, full in zip(out["plain"], out["validated"], strict=True):
        if fast["statusCode"] == 200:  # the latency differs, nothing else
            fast["body"], full["body"] = (json.dumps({**json.loads(a["body"]), "latency_ms": 0})
                                          for a in (fast, full))
        assert fast == full
    assert out["coerced"]["statusCode"] == 200  # 2.0 for top_k 2: validation's, as before
    assert len(json.loads(out["coerced"]["body"])["predictions"][0]["top_k"]) == 2
