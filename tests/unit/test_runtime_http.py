"""The inference API's error model: one body shape, and the answer each kind of error gets."""

from __future__ import annotations

import json

from lambdaforge.runtime.errors import InvalidInputError, ModelNotReadyError, RuntimeModelError
from lambdaforge.runtime.http import ErrorAnswer, field_path, invalid_request, model_error, not_found


def test_every_answer_has_the_one_body_shape() -> None:
    plain = ErrorAnswer(404, "not_found", "no route")
    assert json.loads(plain.body()) == {"error": "not_found", "message": "no route"}
    full = ErrorAnswer(422, "invalid_request", "top_k: bad", "top_k", [{"field": "top_k", "reason": "bad"}])
    assert json.loads(full.body()) == {"error": "invalid_request", "message": "top_k: bad", "field": "top_k",
                                       "details": [{"field": "top_k", "reason": "bad"}]}
    response = full.response()
    assert response.status_code == 422 and response.body == full.body()
    assert full.proxy() == {"statusCode": 422, "headers": {"Content-Type": "application/json"}, "body": full.body(),
                            "isBase64Encoded": False}


def test_field_paths_read_the_way_a_person_writes_them() -> None:
    assert field_path(("body", "instances", 0, "list[any]")) == "instances[0]"
    assert field_path(("body", "instances", 2, "str")) == "instances[2]"
    assert field_path(("body", "options", "top_k")) == "options.top_k"
    assert field_path(("body",)) == "body"


def test_validation_errors_become_one_answer() -> None:
    assert invalid_request([], "  ").code == "empty_body"
    malformed = invalid_request([{"type": "json_invalid", "msg": "EOF", "loc": ("body", 12)}], "{")
    assert (malformed.status, malformed.code) == (400, "malformed_json") and "at character 12" in malformed.message
    union = [{"type": "x", "loc": ("body", "instances", 0, "str"), "msg": "not a string"},
             {"type": "y", "loc": ("body", "instances", 0, "list[any]"), "msg": "not a list"}]
    answer = invalid_request(union, '{"instances": [1]}')
    assert (answer.status, answer.field, answer.message) == (422, "instances[0]", "instances[0]: not a string")
    assert answer.details == [{"field": "instances[0]", "reason": "not a string"}]  # one line per field


def test_model_errors_map_to_422_and_503() -> None:
    bad = model_error(InvalidInputError("instances[1]", "shape [3]"))
    assert (bad.status, bad.code, bad.field) == (422, "invalid_input", "instances[1]")
    not_ready = model_error(ModelNotReadyError("none yet"))
    assert (not_ready.status, not_ready.code) == (503, "model_not_ready")
    assert model_error(RuntimeModelError("corrupt")).code == "model_unavailable"
    assert not_found("GET", "/nope").message == "no route GET /nope; see /docs"
