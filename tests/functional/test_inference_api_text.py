"""The inference API over real HTTP with a text model: predictions and malformed text requests."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.functional.conftest import Api
from tests.functional.test_inference_api import send


def test_text_predictions(text_api: Api) -> None:
    r = text_api.post("/predict", {"instances": ["I was charged twice for my plan", "my parcel never arrived"],
                                   "top_k": 2})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert [p["label"] for p in preds] == ["billing", "shipping"]
    assert all(len(p["top_k"]) == 2 for p in preds)


TEXT_BAD: list[tuple[str, dict[str, Any], int, tuple[str, ...]]] = [
    ("empty text", {"body": {"instances": [""]}}, 422, ("instances[0]", "empty")),
    ("whitespace text", {"body": {"instances": ["   \n"]}}, 422, ("instances[0]", "empty")),
    ("text too long", {"body": {"instances": ["a" * 2001]}}, 422, ("instances[0]", "2001 characters")),
    ("numbers for a text model", {"body": {"instances": [[1, 2, 3]]}}, 422, ("instances[0]", "must be a string")),
    ("text batch too large", {"body": {"instances": ["hi"] * 33}}, 422, ("instances", "limit of 32")),
]


@pytest.mark.parametrize(("name", "req", "status", "words"), TEXT_BAD, ids=[c[0] for c in TEXT_BAD])
def test_malformed_text_requests_get_a_4xx_json_answer(text_api: Api, name: str, req: dict[str, Any], status: int,
                                                       words: tuple[str, ...]) -> None:
    r = send(text_api, req)
    assert r.status_code == status, f"{name}: {r.status_code} {r.text[:300]}"
    text = json.dumps(r.json())
    for word in words:
        assert word in text, f"{name}: {word!r} not in {text[:300]}"
