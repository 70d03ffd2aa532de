"""The inference API's HTTP model around its routes: one error body, the prechecks, an answer for each error.

Bad input is a 4xx JSON answer naming the problem, never a 500. Every refusal has the same body,
`{"error": code, "message": ..., "field"?: ..., "details"?: [...]}`, whether the resolver answers
(validation, model errors, unknown routes) or a precheck refuses the event before it is parsed.
Powertools and the standard library only, so the local gateway's tests can check its events here.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from lambdaforge import envvars
from lambdaforge.runtime.errors import InvalidInputError, ModelNotReadyError, RuntimeModelError
from lambdaforge.runtime.schemas import HealthResponse

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
    from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

TITLE = "lambdaforge inference API"
VERSION = "1"
DEFAULT_MAX_BODY_BYTES = 1 << 20
PREDICT_RESPONSES: dict[int, OpenAPIResponse] = {
    200: {"description": "predictions"}, 400: {"description": "malformed JSON"},
    413: {"description": "body too large"}, 422: {"description": "invalid input, naming the field"},
    503: {"description": "no model yet"}}
_UNION_TAGS = ("str", "int", "float", "bool", "list", "dict")
_BODY_METHODS = ("POST", "PUT", "PATCH")


@dataclass(frozen=True)
class ErrorAnswer:
    """An error answer of the API; `body` is the one shape every refusal has."""

    status: int
    code: str
    message: str
    field: str | None = None
    details: list[dict[str, Any]] | None = None

    def body(self) -> str:
        return json.dumps({"error": self.code, "message": self.message, **({"field": self.field} if self.field else {}),
                           **({"details": self.details} if self.details else {})})

    def response(self) -> Response[str]:
        """For the resolver's exception handlers."""
        return Response(status_code=self.status, content_type=content_types.APPLICATION_JSON, body=self.body())

    def proxy(self) -> dict[str, Any]:
        """The Lambda answer itself, for refusals made before the resolver runs."""
        return {"statusCode": self.status, "headers": {"Content-Type": content_types.APPLICATION_JSON},
                "body": self.body(), "isBase64Encoded": False}


def max_body_bytes() -> int:
    return envvars.setting(None, envvars.MAX_BODY_BYTES, DEFAULT_MAX_BODY_BYTES, int)


def precheck(event: dict[str, Any], max_bytes: int) -> ErrorAnswer | None:
    """What must be refused before validation parses the body: its size, a non-JSON content type, non-UTF-8."""
    size = body_size(event)
    if size > max_bytes:
        return ErrorAnswer(413, "payload_too_large", f"request body is {size} bytes; the limit is {max_bytes}")
    method = event.get("requestContext", {}).get("http", {}).get("method", "GET")
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    content_type = headers.get("content-type", "")
    if method in _BODY_METHODS and content_type and "json" not in content_type.lower():
        return ErrorAnswer(415, "unsupported_media_type", f"content-type must be application/json, not {content_type}")
    if event.get("isBase64Encoded") and event.get("body"):
        try:
            base64.b64decode(event["body"], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            return ErrorAnswer(400, "malformed_body", f"the request body is not UTF-8 encoded JSON ({exc})")
    return None


def body_size(event: dict[str, Any]) -> int:
    """The decoded size without decoding: base64 carries 3 bytes in 4 characters."""
    body = event.get("body") or ""
    return len(body) * 3 // 4 if event.get("isBase64Encoded") else len(body.encode("utf-8"))


def field_path(loc: Iterable[Any]) -> str:
    """pydantic's ('body', 'instances', 0, 'list[any]') as `instances[0]`, the way a person writes it."""
    out = ""
    for part in loc:
        if part == "body":
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" in str(part) or str(part) in _UNION_TAGS:
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def invalid_request(errors: Sequence[Any], body: str | None) -> ErrorAnswer:
    """Validation's errors as one answer: empty or malformed JSON (400), else each field's reason (422)."""
    if not (body or "").strip():
        return ErrorAnswer(400, "empty_body", "the request body is empty; send a JSON object")
    for err in errors:
        if err.get("type") == "json_invalid":
            return ErrorAnswer(400, "malformed_json",
                               f"the request body is not valid JSON ({err.get('msg', 'invalid')} "
                               f"at character {err.get('loc', ('', '?'))[-1]})")
    details: list[dict[str, Any]] = []
    for err in errors:
        field = field_path(err.get("loc", ()))
        if not any(d["field"] == field for d in details):  # a union reports each member; one line is enough
            details.append({"field": field, "reason": err.get("msg", "invalid")})
    first = details[0] if details else {"field": "body", "reason": "invalid"}
    return ErrorAnswer(422, "invalid_request", f"{first['field']}: {first['reason']}", first["field"], details)


def model_error(exc: InvalidInputError | RuntimeModelError) -> ErrorAnswer:
    """Input that does not fit the model is 422 naming the field; a missing or broken model is 503."""
    if isinstance(exc, InvalidInputError):
        return ErrorAnswer(422, "invalid_input", str(exc), exc.field)
    if isinstance(exc, ModelNotReadyError):
        return ErrorAnswer(503, "model_not_ready", str(exc))
    return ErrorAnswer(503, "model_unavailable", str(exc))


def not_found(method: str, path: str) -> ErrorAnswer:
    return ErrorAnswer(404, "not_found", f"no route {method} {path}; see /docs")


def health(describe: Callable[[], dict[str, Any]]) -> Response[str]:
    """200 with the model's name and version, or 503 while there is no model yet."""
    try:
        info = describe()
    except ModelNotReadyError as exc:
        body = HealthResponse(status="no_model", detail=str(exc))
        return Response(503, content_types.APPLICATION_JSON, body.model_dump_json(exclude_none=True))
    body = HealthResponse(status="ok", recipe=info["recipe"], version=str(info["version"]))
    return Response(200, content_types.APPLICATION_JSON, body.model_dump_json(exclude_none=True))


def install(app: APIGatewayHttpResolver, logger: Logger) -> None:
    """Give the resolver the API's error answers, its docs (/docs) and its schema (/openapi.json)."""
    app.enable_swagger(path="/docs", title=TITLE, version=VERSION,
                       description="Predictions from the live model. POST /predict with a batch of instances.")

    @app.exception_handler(RequestValidationError)
    def _invalid_request(exc: RequestValidationError) -> Response[str]:
        return invalid_request(exc.errors(), app.current_event.decoded_body).response()

    @app.exception_handler([InvalidInputError, RuntimeModelError])
    def _model_error(exc: InvalidInputError | RuntimeModelError) -> Response[str]:
        answer = model_error(exc)
        if answer.code == "model_unavailable":
            logger.exception("model could not be loaded")
        return answer.response()

    @app.not_found
    def _not_found(exc: Exception) -> Response[str]:
        return not_found(app.current_event.http_method, app.current_event.path).response()

    @app.get("/openapi.json", include_in_schema=False)
    def _openapi() -> Response[str]:
        return Response(200, content_types.APPLICATION_JSON, app.get_openapi_json_schema(title=TITLE, version=VERSION))
