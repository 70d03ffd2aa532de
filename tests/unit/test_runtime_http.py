"""The inference API's error model: one body shape, and the answer each kind of error gets."""

from __future__ import annotations

import json

import pytest

from lambdaforge.runtime.errors import InvalidInputError, ModelNotReadyError, RuntimeModelError
from lambdaforge.runtime.http import (
    ErrorAnswer,
    bounded_json,
    field_path,
    invalid_request,
    is_json,
    media_type,
    model_error,
    not_found,
    precheck,
    status_metrics,
)


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


@pytest.mark.parametrize(("doc", "words"), [
    ("[" * 100_000 + "]" * 100_000, "nested more than 32"),  # json.loads alone: RecursionError
    ("[" * 33 + "]" * 33, "nested more than 32"),
    ("1" * 400, "400 characters"),  # OverflowError once it became a float
    ("1" * 5000, "5000 characters"),  # ValueError from int() (4,300 digits)
    ("1e309", "too large for a 64-bit float"),  # infinity
    ("-1e309", "too large for a 64-bit float"),
    ("NaN", "NaN is not JSON"),
    ("Infinity", "Infinity is not JSON"),
    ("{" + ",".join(f'"k{i}": 1' for i in range(50_000)) + "}", "50000 keys"),
    ('"\\ud800"', "lone surrogate"),
    ('{"a": 1, "a": 2}', "appears twice"),
])
def test_bounded_json_refuses_what_would_become_a_500(doc: str, words: str) -> None:
    with pytest.raises(json.JSONDecodeError) as caught:
        bounded_json(doc)
    assert words in caught.value.msg


def test_bounded_json_reads_ordinary_json_as_json_loads_does() -> None:
    doc = '{"instances": [[0, 1.5, -2e3, 16]], "top_k": 3, "s": "caf\\u00e9 \\ud83d\\ude00"}'
    assert bounded_json(doc) == json.loads(doc)
    assert bounded_json("[" * 32 + "]" * 32) == json.loads("[" * 32 + "]" * 32)


@pytest.mark.parametrize(("header", "kind", "json_"), [
    ("application/json", "application/json", True), ("Application/JSON; charset=UTF-8", "application/json", True),
    ("application/vnd.api+json", "application/vnd.api+json", True), ("text/json", "text/json", False),
    ("text/plain", "text/plain", False), ("application/jsonx", "application/jsonx", False)])
def test_media_types_are_case_insensitive_and_plus_json_is_json(header: str, kind: str, json_: bool) -> None:
    assert media_type({"Content-Type": header})[0] == kind
    assert is_json(kind) is json_


def test_a_json_content_type_reaches_the_resolver_in_its_one_spelling() -> None:
    event = {"requestContext": {"http": {"method": "POST"}}, "headers": {"content-type": "Application/JSON"},
             "body": "{}"}
    assert precheck(event, 100) is None and event["headers"] == {"content-type": "application/json"}
    latin = {"requestContext": {"http": {"method": "POST"}},
             "headers": {"content-type": "application/json;charset=latin-1"}, "body": "{}"}
    refused = precheck(latin, 100)
    assert refused is not None and (refused.status, refused.code) == (415, "unsupported_media_type")


def test_each_answer_counts_once_in_its_class() -> None:
    counts = {status: {k: v for k, (_, v) in status_metrics(status).items()} for status in (200, 422, 503, 500)}
    assert counts[200] == {"Answers": 1, "ClientErrors": 0, "ServerErrors": 0, "Unavailable": 0}
    assert counts[422] == {"Answers": 1, "ClientErrors": 1, "ServerErrors": 0, "Unavailable": 0}
    assert counts[503] == {"Answers": 1, "ClientErrors": 0, "ServerErrors": 1, "Unavailable": 1}
    assert counts[500] == {"Answers": 1, "ClientErrors": 0, "ServerErrors": 1, "Unavailable": 0}
