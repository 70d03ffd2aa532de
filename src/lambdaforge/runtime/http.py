"""The inference API's HTTP model around its routes: one error body, the prechecks, an answer for each error.

Bad input is a 4xx JSON answer naming the problem, never a 500. Every refusal has the same body,
`{"error": code, "message": ..., "field"?: ..., "details"?: [...]}`, whether the resolver answers
(validation, model errors, unknown routes) or a precheck refuses the event before it is parsed.
Powertools and the standard library only, so the local gateway's tests can check its events here.

No pydantic on the cold path: a valid prediction request (`plain_request`) is served without the
resolver's validation, and the pydantic models (`schemas`) are built only for what needs them: a
body that is not plainly valid (validation names the problem, as it always did) and the docs.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from lambdaforge import envvars
from lambdaforge.runtime.errors import InvalidInputError, ModelNotReadyError, RuntimeModelError

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger, Metrics
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

    from lambdaforge.runtime.predictor import Prediction, Predictor

TITLE = "lambdaforge inference API"
VERSION = "1"
DEFAULT_MAX_BODY_BYTES = 1 << 20
_UNION_TAGS = ("str", "int", "float", "bool", "list", "dict")
_BODY_METHODS = ("POST", "PUT", "PATCH")
MAX_TOP_K = 20
DEFAULT_TOP_K = 3


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


# Per-version answer counts (EMF, namespace POWERTOOLS_METRICS_NAMESPACE, dimension VERSION_DIMENSION):
# a canary reads its own version's, so a model that answers 503 or 422 to everything is seen.
VERSION_DIMENSION = "FunctionVersion"
CLIENT_ERRORS = "ClientErrors"  # every 4xx
SERVER_ERRORS = "ServerErrors"  # every 5xx, 503 included
UNAVAILABLE = "Unavailable"  # 503: no model, or one that cannot load


def function_version() -> str:
    return os.environ.get(envvars.LAMBDA_FUNCTION_VERSION) or "$LATEST"


def version_dimension(metrics: Metrics) -> None:
    """Every metric of this execution environment carries its version (one environment, one version)."""
    metrics.set_default_dimensions(**{VERSION_DIMENSION: function_version()})


def status_metrics(status: int) -> dict[str, tuple[MetricUnit, float]]:
    """The counts one answer adds: zeros too, so a version's error rate has a denominator."""
    return {"Answers": (MetricUnit.Count, 1.0),
            CLIENT_ERRORS: (MetricUnit.Count, float(400 <= status < 500)),
            SERVER_ERRORS: (MetricUnit.Count, float(status >= 500)),
            UNAVAILABLE: (MetricUnit.Count, float(status == 503))}


def max_body_bytes() -> int:
    return envvars.setting(None, envvars.MAX_BODY_BYTES, DEFAULT_MAX_BODY_BYTES, int)


def media_type(headers: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The content type's media type (lower case: media types are case-insensitive) and its parameters."""
    value = next((str(v) for k, v in headers.items() if k.lower() == "content-type"), "")
    kind, _, rest = value.partition(";")
    params = {}
    for part in rest.split(";"):
        key, sep, val = part.partition("=")
        if sep:
            params[key.strip().lower()] = val.strip().strip('"')
    return kind.strip().lower(), params


def is_json(kind: str) -> bool:
    """application/json, and any structured `+json` type (RFC 6839): both are JSON."""
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


def precheck(event: dict[str, Any], max_bytes: int) -> ErrorAnswer | None:
    """What must be refused before validation parses the body: its size, a non-JSON content type, non-UTF-8.

    A JSON content type is rewritten to `application/json` for the resolver, which only knows that
    spelling (it would answer `Application/JSON` or `application/problem+json` with its own 415).
    """
    size = body_size(event)
    if size > max_bytes:
        return ErrorAnswer(413, "payload_too_large", f"request body is {size} bytes; the limit is {max_bytes}")
    method = event.get("requestContext", {}).get("http", {}).get("method", "GET")
    headers = event.get("headers") or {}
    kind, params = media_type(headers)
    if method in _BODY_METHODS and kind:
        if not is_json(kind):
            return ErrorAnswer(415, "unsupported_media_type", f"content-type must be application/json, not {kind}")
        charset = params.get("charset", "utf-8").lower()
        if charset not in ("utf-8", "utf8"):
            return ErrorAnswer(415, "unsupported_media_type", f"charset must be utf-8, not {charset}")
        event["headers"] = {**{k: v for k, v in headers.items() if k.lower() != "content-type"},
                            "content-type": "application/json"}
    if event.get("isBase64Encoded") and event.get("body"):
        try:
            base64.b64decode(event["body"], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            return ErrorAnswer(400, "malformed_body", f"the request body is not UTF-8 encoded JSON ({exc})")
    return None


# --- bounded JSON: every parse failure is a 400 naming the problem, never a RecursionError or an
# OverflowError further on (json.loads alone accepts 1e309 as infinity, 4,000-digit integers, 50,000 keys)
MAX_JSON_DEPTH = 32
MAX_NUMBER_CHARS = 40
MAX_OBJECT_KEYS = 64


def _bad(message: str, doc: str, pos: int = 0) -> json.JSONDecodeError:
    err = json.JSONDecodeError(message, doc, pos)
    err.msg = message  # the position is in `pos`; the message stays as written
    return err


def bounded_json(doc: str) -> Any:
    """`json.loads` with limits on depth, number length, keys per object, non-finite numbers and Unicode."""
    def number(text: str) -> float | int:
        if len(text) > MAX_NUMBER_CHARS:
            raise _bad(f"number {text[:12]}... has {len(text)} characters; at most {MAX_NUMBER_CHARS} are accepted",
                       doc)
        value: float | int = float(text) if any(c in text for c in ".eE") else int(text)
        if isinstance(value, float) and not math.isfinite(value):
            raise _bad(f"number {text} is too large for a 64-bit float", doc)
        return value

    def constant(text: str) -> Any:
        raise _bad(f"{text} is not JSON (use a finite number)", doc)

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        if len(items) > MAX_OBJECT_KEYS:
            raise _bad(f"an object has {len(items)} keys; at most {MAX_OBJECT_KEYS} are accepted", doc)
        out = dict(items)
        if len(out) != len(items):
            dup = next(k for i, (k, _) in enumerate(items) if any(k == k2 for k2, _ in items[:i]))
            raise _bad(f"key {dup[:40]!r} appears twice in one object", doc)
        return out

    try:
        value = json.loads(doc, parse_float=number, parse_int=number, parse_constant=constant,
                           object_pairs_hook=pairs)
    except RecursionError:
        raise _bad(f"the JSON is nested more than {MAX_JSON_DEPTH} levels deep", doc) from None
    except ValueError as exc:  # int() of a long integer string, and JSONDecodeError itself
        if isinstance(exc, json.JSONDecodeError):
            raise
        raise _bad(str(exc), doc) from None
    _check_depth_and_text(value, doc)
    return value


def _check_depth_and_text(value: Any, doc: str) -> None:
    """Depth past the limit, and strings that are not Unicode text (a lone surrogate escape, "\\ud800")."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise _bad(f"the JSON is nested more than {MAX_JSON_DEPTH} levels deep", doc)
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise _bad(f"string {item[:20]!r} holds a lone surrogate (\\ud800-\\udfff), not Unicode text",
                           doc) from None


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
            reason = (err.get("ctx") or {}).get("error") or err.get("msg", "invalid")
            return ErrorAnswer(400, "malformed_json",
                               f"the request body is not valid JSON ({reason} "
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


def not_allowed(method: str, path: str, allowed: Sequence[str]) -> ErrorAnswer:
    return ErrorAnswer(405, "method_not_allowed", f"{path} does not take {method}; it takes {', '.join(allowed)}")


def health(describe: Callable[[], dict[str, Any]]) -> Response[str]:
    """200 with the model's name and version, or 503 (the one error body) while there is no model yet."""
    try:
        info = describe()
    except RuntimeModelError as exc:
        return model_error(exc).response()
    # the bytes pydantic's HealthResponse.model_dump_json() wrote: compact, UTF-8 as is
    body = json.dumps({"status": "ok", "recipe": info["recipe"], "version": str(info["version"])},
                      separators=(",", ":"), ensure_ascii=False)
    return Response(200, content_types.APPLICATION_JSON, body)


def plain_request(event: dict[str, Any]) -> dict[str, Any] | None:
    """The request, when the body is plainly a valid prediction request; None for anything else.

    Plainly valid: a JSON body (as the resolver reads it: `bounded_json`, a JSON content type) that is
    an object with `instances` (a non-empty list of strings and lists) and maybe `top_k` (an integer
    1..MAX_TOP_K), nothing else. `schemas.PredictRequest` takes such a body unchanged, so serving it
    without validation gives the same answer; any other body (3.0 for 3, a list around the object,
    a missing field) is left to the validation, which decides and names the problem. The answer
    holds `top_k` with its default filled in.
    """
    headers = event.get("headers") or {}
    if any(str(v) != content_types.APPLICATION_JSON for k, v in headers.items() if k.lower() == "content-type"):
        return None
    try:
        body = APIGatewayProxyEventV2(event, bounded_json).json_body  # what the resolver would parse
    except Exception:  # any body that does not parse is the validation's to answer
        return None
    if type(body) is not dict or "instances" not in body or not body.keys() <= {"instances", "top_k"}:
        return None
    instances, top_k = body["instances"], body.get("top_k", DEFAULT_TOP_K)
    if type(instances) is not list or not instances or any(type(i) not in (str, list) for i in instances):
        return None
    if type(top_k) is not int or not 1 <= top_k <= MAX_TOP_K:
        return None
    return {"instances": instances, "top_k": top_k}


def predict_body(info: dict[str, Any], results: Sequence[Prediction], latency_ms: float) -> dict[str, Any]:
    """The answer for a batch: the model that served it (`Predictor.describe()`) and one entry per instance
    (`schemas.PredictResponse` has this shape, and serializes it to the same JSON)."""
    return {
        "model": {"recipe": info["recipe"], "version": str(info["version"])},
        "predictions": [{"label": r.label, "index": r.index, "score": r.score,
                         "top_k": [{"label": lab, "score": s} for lab, s in r.top_k]} for r in results],
        "latency_ms": round(latency_ms, 3),
    }


def head_as_get(event: dict[str, Any], app: APIGatewayHttpResolver) -> bool:
    """HEAD on a GET route is that GET without its body (RFC 9110); the event is rewritten in place."""
    http_ctx = event.get("requestContext", {}).get("http", {})
    if http_ctx.get("method") != "HEAD" or "GET" not in routes(app).get(event.get("rawPath", ""), []):
        return False
    http_ctx["method"] = "GET"
    return True


def routes(app: APIGatewayHttpResolver) -> dict[str, list[str]]:
    """Path -> the methods it takes (HEAD wherever GET is), from the resolver's own route table."""
    table: dict[str, list[str]] = {}
    for route in [*getattr(app, "_static_routes", []), *getattr(app, "_dynamic_routes", [])]:
        methods = table.setdefault(route.path, [])
        methods.append(route.method)
        if route.method == "GET":
            methods.append("HEAD")
    return {path: sorted(set(methods)) for path, methods in table.items()}


def install(app: APIGatewayHttpResolver, logger: Logger, predictor: Callable[[], Predictor],
            documented: Callable[[], APIGatewayHttpResolver] | None = None) -> None:
    """Give the resolver the API's error answers, its docs (/docs) and its model's contract (/openapi.json).

    `documented` is the resolver whose routes the document describes (with their request and response
    models), made when the document is first asked for; by default `app` itself.
    """
    documents: dict[int, str] = {}

    def spec() -> str:
        """The document for the model being served (built once per model: it runs the model's example)."""
        try:
            served: Predictor | None = predictor()
        except RuntimeModelError:
            served = None
        key = id(served)
        if key not in documents:
            from lambdaforge.runtime import contract

            described = documented() if documented else app
            base = json.loads(described.get_openapi_json_schema(title=TITLE, version=VERSION))
            documents[key] = json.dumps(contract.document(base, served))
        return documents[key]

    @app.exception_handler(RequestValidationError)
    def _invalid_request(exc: RequestValidationError) -> Response[str]:
        return invalid_request(exc.errors(), app.current_event.decoded_body).response()

    @app.exception_handler(RequestUnsupportedContentType)
    def _unsupported(exc: RequestUnsupportedContentType) -> Response[str]:
        return ErrorAnswer(415, "unsupported_media_type", "content-type must be application/json").response()

    @app.exception_handler([InvalidInputError, RuntimeModelError])
    def _model_error(exc: InvalidInputError | RuntimeModelError) -> Response[str]:
        answer = model_error(exc)
        if answer.code == "model_unavailable":
            logger.exception("model could not be loaded")
        return answer.response()

    @app.not_found
    def _not_found(exc: Exception) -> Response[str]:
        method, path = app.current_event.http_method, app.current_event.path
        allowed = routes(app).get(path)
        if allowed:
            answer = not_allowed(method, path, allowed).response()
            answer.headers["Allow"] = ", ".join(allowed)
            return answer
        return not_found(method, path).response()

    @app.get("/openapi.json", include_in_schema=False)
    def _openapi() -> Response[str]:
        return Response(200, content_types.APPLICATION_JSON, spec())

    @app.get("/docs", include_in_schema=False)
    def _docs() -> Response[str]:
        from pathlib import Path

        from aws_lambda_powertools.event_handler.openapi import swagger_ui
        from aws_lambda_powertools.event_handler.openapi.swagger_ui import generate_swagger_html

        assets = Path(swagger_ui.__file__).parent
        html = generate_swagger_html(spec().replace("</", "<\\/"),
                                     (assets / "swagger-ui-bundle.min.js").read_text(encoding="utf-8"),
                                     (assets / "swagger-ui.min.css").read_text(encoding="utf-8"), "", None)
        return Response(200, "text/html", html)
