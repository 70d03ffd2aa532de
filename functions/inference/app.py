"""Inference function: API Gateway HTTP API (payload 2.0) -> the lambdaforge runtime.

(No `from __future__ import annotations`: Powertools reads the route annotations at run time.)

Thin on purpose: routes parse and shape; `lambdaforge.runtime` loads, validates and predicts.
Bad input is a 4xx JSON answer naming the problem, never a 500.
"""


import base64
import binascii
import json
import os
import time
import warnings
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdaforge import envvars
from lambdaforge.observability import make_tracer
from lambdaforge.runtime import InvalidInputError, ModelNotReadyError, RuntimeModelError, get_predictor
from lambdaforge.runtime.schemas import HealthResponse, PredictRequest, PredictResponse

logger = Logger()
tracer = make_tracer()
metrics = Metrics()
app = APIGatewayHttpResolver(enable_validation=True)
app.enable_swagger(path="/docs", title="lambdaforge inference API", version="1",
                   description="Predictions from the live model. POST /predict with a batch of instances.")
MAX_BODY_BYTES = envvars.setting(None, envvars.MAX_BODY_BYTES, 1 << 20, int)
METRICS_ON = not is_metrics_disabled()
# GET routes publish no metrics; that is expected, not worth a warning per request.
warnings.filterwarnings("ignore", message="No application metrics to publish")


def error(status: int, code: str, message: str, field: str | None = None,
          details: list[dict[str, Any]] | None = None) -> Response[str]:
    body = {"error": code, "message": message, **({"field": field} if field else {}),
            **({"details": details} if details else {})}
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=json.dumps(body))


def precheck(event: dict[str, Any]) -> tuple[int, str, str] | None:
    """What must be refused before validation parses the body: its size and a non-JSON content type."""
    size = body_size(event)
    if size > MAX_BODY_BYTES:
        return 413, "payload_too_large", f"request body is {size} bytes; the limit is {MAX_BODY_BYTES}"
    method = event.get("requestContext", {}).get("http", {}).get("method", "GET")
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    content_type = headers.get("content-type", "")
    if method in ("POST", "PUT", "PATCH") and content_type and "json" not in content_type.lower():
        return 415, "unsupported_media_type", f"content-type must be application/json, not {content_type}"
    if event.get("isBase64Encoded") and event.get("body"):
        try:
            base64.b64decode(event["body"], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            return 400, "malformed_body", f"the request body is not UTF-8 encoded JSON ({exc})"
    return None


def body_size(event: dict[str, Any]) -> int:
    """The decoded size without decoding: base64 carries 3 bytes in 4 characters."""
    body = event.get("body") or ""
    return len(body) * 3 // 4 if event.get("isBase64Encoded") else len(body.encode("utf-8"))


_UNION_TAGS = ("str", "int", "float", "bool", "list", "dict")


def field_path(loc: Any) -> str:
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


@app.exception_handler(RequestValidationError)
def _invalid_request(exc: RequestValidationError) -> Response[str]:
    if not (app.current_event.decoded_body or "").strip():
        return error(400, "empty_body", "the request body is empty; send a JSON object")
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            return error(400, "malformed_json", f"the request body is not valid JSON ({err.get('msg', 'invalid')} "
                                                f"at character {err.get('loc', ('', '?'))[-1]})")
    details: list[dict[str, Any]] = []
    for err in exc.errors():
        field = field_path(err.get("loc", ()))
        if not any(d["field"] == field for d in details):  # a union reports each member; one line is enough
            details.append({"field": field, "reason": err.get("msg", "invalid")})
    first = details[0] if details else {"field": "body", "reason": "invalid"}
    return error(422, "invalid_request", f"{first['field']}: {first['reason']}", first["field"], details)


@app.exception_handler(InvalidInputError)
def _invalid_input(exc: InvalidInputError) -> Response[str]:
    return error(422, "invalid_input", str(exc), exc.field)


@app.exception_handler(ModelNotReadyError)
def _not_ready(exc: ModelNotReadyError) -> Response[str]:
    return error(503, "model_not_ready", str(exc))


@app.exception_handler(RuntimeModelError)
def _model_error(exc: RuntimeModelError) -> Response[str]:
    logger.exception("model could not be loaded")
    return error(503, "model_unavailable", str(exc))


@app.not_found
def _not_found(exc: Exception) -> Response[str]:
    event = app.current_event
    return error(404, "not_found", f"no route {event.http_method} {event.path}; see /docs")


@app.post("/predict", summary="Predict a batch", responses={
    200: {"description": "predictions"}, 400: {"description": "malformed JSON"},
    413: {"description": "body too large"}, 422: {"description": "invalid input, naming the field"},
    503: {"description": "no model yet"}})
@tracer.capture_method
def predict(request: PredictRequest) -> PredictResponse:
    predictor = get_predictor()
    t0 = time.perf_counter()
    results = predictor.predict(request.instances, top_k=request.top_k)
    latency = (time.perf_counter() - t0) * 1000
    if METRICS_ON:  # disabled metrics are never cleared by Powertools; they would pile up and print
        metrics.add_metric(name="PredictLatency", unit=MetricUnit.Milliseconds, value=latency)
        metrics.add_metric(name="BatchSize", unit=MetricUnit.Count, value=len(request.instances))
    info = predictor.describe()
    return PredictResponse.model_validate({
        "model": {"recipe": info["recipe"], "version": str(info["version"])},
        "predictions": [{"label": r.label, "index": r.index, "score": r.score,
                         "top_k": [{"label": lab, "score": s} for lab, s in r.top_k]} for r in results],
        "latency_ms": round(latency, 3),
    })


@app.get("/health", summary="Is a model loaded")
def health() -> Response[str]:
    try:
        info = get_predictor().describe()
    except ModelNotReadyError as exc:
        body = HealthResponse(status="no_model", detail=str(exc))
        return Response(503, content_types.APPLICATION_JSON, body.model_dump_json(exclude_none=True))
    body = HealthResponse(status="ok", recipe=info["recipe"], version=str(info["version"]))
    return Response(200, content_types.APPLICATION_JSON, body.model_dump_json(exclude_none=True))


@app.get("/model", summary="The live model: version, metrics, quantization")
def model() -> dict[str, Any]:
    return get_predictor().describe()


@app.get("/openapi.json", include_in_schema=False)
def openapi() -> Response[str]:
    return Response(200, content_types.APPLICATION_JSON,
                    app.get_openapi_json_schema(title="lambdaforge inference API", version="1"))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    refused = precheck(event)
    if refused:
        status, code, message = refused
        return {"statusCode": status, "headers": {"Content-Type": content_types.APPLICATION_JSON},
                "body": json.dumps({"error": code, "message": message}), "isBase64Encoded": False}
    return app.resolve(event, context)


# Load the model at init (cold start), not on the first request; a missing model is not fatal here.
if os.environ.get("LAMBDAFORGE_SKIP_PRELOAD") != "1":
    try:
        get_predictor()
    except RuntimeModelError as _exc:
        logger.warning("model not loaded at init", extra={"reason": str(_exc)})
