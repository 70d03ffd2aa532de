"""The inference API over real HTTP with a tensor model (digits): good requests, and malformed ones
that must all get a 4xx JSON answer naming the problem (never a 5xx)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.functional.conftest import Api

ZERO = [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0, 0, 4, 12, 0, 0, 8, 8, 0,
        0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10, 12, 0, 0, 0, 0, 6, 13, 10, 0, 0, 0]


def test_digits_predictions_health_model_and_openapi(digits_api: Api) -> None:
    r = digits_api.post("/predict", {"instances": [ZERO, [ZERO[i * 8:(i + 1) * 8] for i in range(8)]]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [p["label"] for p in body["predictions"]] == ["0", "0"]
    assert body["model"]["recipe"] == "digits" and len(body["predictions"][0]["top_k"]) == 3
    assert digits_api.get("/health").json()["status"] == "ok"
    info = digits_api.get("/model").json()
    assert info["quantization"]["chosen"] in ("static", "dynamic", "dynamic-fused")
    spec = digits_api.get("/openapi.json").json()
    assert "/predict" in spec["paths"] and "post" in spec["paths"]["/predict"]


# (name, request, expected status, words the answer must contain)
DIGITS_BAD: list[tuple[str, dict[str, Any], int, tuple[str, ...]]] = [
    ("malformed JSON", {"raw": b'{"instances": [1, 2'}, 400, ("not valid JSON",)),
    ("empty body", {"raw": b""}, 400, ("empty",)),
    ("not UTF-8", {"raw": b'\xff\xfe{"instances": [1]}'}, 400, ("UTF-8",)),
    ("JSON array body", {"body": [1, 2, 3]}, 422, ("body",)),
    ("JSON string body", {"body": "hello"}, 422, ("body",)),
    ("missing instances", {"body": {}}, 422, ("instances", "required")),
    ("instances not a list", {"body": {"instances": 5}}, 422, ("instances",)),
    ("empty batch", {"body": {"instances": []}}, 422, ("instances", "at least 1")),
    ("oversized batch", {"body": {"instances": [ZERO] * 65}}, 422, ("instances", "exceeds the limit of 64")),
    ("63 numbers", {"body": {"instances": [ZERO[:63]]}}, 422, ("instances[0]", "shape [63]")),
    ("wrong nested shape", {"body": {"instances": [[[1, 2], [3, 4]]]}}, 422, ("instances[0]", "expected [1, 8, 8]")),
    ("ragged nested lists", {"body": {"instances": [[[0] * 8] * 7 + [[0] * 7]]}}, 422, ("instances[0]",)),
    ("string instance", {"body": {"instances": ["abc"]}}, 422, ("instances[0]", "got str")),
    ("null instance", {"body": {"instances": [None]}}, 422, ("instances[0]",)),
    ("booleans as pixels", {"body": {"instances": [[True] * 64]}}, 422, ("instances[0]", "not a number")),
    ("strings inside", {"body": {"instances": [["1"] * 64]}}, 422, ("instances[0]", "not a number")),
    ("infinity", {"raw": ('{"instances": [[' + ",".join(["1e999"] * 64) + "]]}").encode()}, 400,
     ("1e999", "too large")),
    ("above the maximum", {"body": {"instances": [[17] * 64]}}, 422, ("instances[0]", "above the maximum 16")),
    ("below the minimum", {"body": {"instances": [[-1] * 64]}}, 422, ("instances[0]", "below the minimum 0")),
    ("unknown field", {"body": {"instances": [ZERO], "foo": 1}}, 422, ("foo",)),
    ("top_k zero", {"body": {"instances": [ZERO], "top_k": 0}}, 422, ("top_k",)),
    ("top_k not a number", {"body": {"instances": [ZERO], "top_k": "x"}}, 422, ("top_k",)),
    ("body over the limit", {"raw": b'{"instances": [' + b"0," * 600_000 + b"0]}"}, 413, ("limit",)),
    ("text/plain content type", {"raw": b'{"instances": [[0]]}', "content_type": "text/plain"}, 415,
     ("content-type",)),
    ("form content type", {"raw": b"instances=1", "content_type": "application/x-www-form-urlencoded"}, 415,
     ("content-type",)),
]


def send(api: Api, req: dict[str, Any]) -> Any:
    return api.post("/predict", req.get("body"), raw=req.get("raw"), content_type=req.get("content_type",
                                                                                           "application/json"))


@pytest.mark.parametrize(("name", "req", "status", "words"), DIGITS_BAD, ids=[c[0] for c in DIGITS_BAD])
def test_malformed_digits_requests_get_a_4xx_json_answer(digits_api: Api, name: str, req: dict[str, Any],
                                                         status: int, words: tuple[str, ...]) -> None:
    r = send(digits_api, req)
    assert r.status_code == status, f"{name}: {r.status_code} {r.text[:300]}"
    body = r.json()
    assert body["error"] and body["message"]
    text = json.dumps(body)
    for word in words:
        assert word in text, f"{name}: {word!r} not in {text[:300]}"


def test_routes_and_methods(digits_api: Api) -> None:
    r = digits_api.get("/nope")
    assert r.status_code == 404 and "no route GET /nope" in r.json()["message"]
    r = digits_api.get("/predict")
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed" and r.headers["Allow"] == "POST"

