"""Inference function: API Gateway HTTP API (payload 2.0) -> the lambdaforge runtime.

(No `from __future__ import annotations`: Powertools reads the route annotations at run time.)

Thin on purpose: routes parse and shape; `lambdaforge.runtime` loads, validates and predicts, and
`lambdaforge.runtime.http` holds the prechecks and the error answers (always a 4xx JSON answer
naming the problem for bad input, never a 500).

Cold start: nothing on the way to the first prediction builds a pydantic model. A request whose
body is plainly valid (`http.plain_request`) is served by `app`, which has no validation; any other
POST goes to `validating()`, the same routes with Powertools' validation and the pydantic models of
`lambdaforge.runtime.schemas`, made the first time one is needed. Both give the same answers
(tests/unit/test_cold_path.py).
"""


import functools
import time
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdaforge.observability import add_metrics, make_metrics, make_tracer
from lambdaforge.runtime import get_predictor, http, preload

logger = Logger()
tracer = make_tracer()
metrics = make_metrics()
http.version_dimension(metrics)
MAX_BODY_BYTES = http.max_body_bytes()


def serve(instances: list[Any], top_k: int) -> dict[str, Any]:
    predictor = get_predictor()
    t0 = time.perf_counter()
    results = predictor.predict(instances, top_k=top_k)
    latency = (time.perf_counter() - t0) * 1000
    add_metrics(metrics, PredictLatency=(MetricUnit.Milliseconds, latency),
                BatchSize=(MetricUnit.Count, len(instances)))
    return http.predict_body(predictor.identity(), results, latency)


@functools.cache
def validating() -> APIGatewayHttpResolver:
    """The API with the resolver's validation, made the first time a request needs it."""
    return resolver(validated=True)


def resolver(validated: bool) -> APIGatewayHttpResolver:
    """The API: the same routes, with or without the resolver's validation (pydantic).

    `app`, without it, serves every request but a POST whose body is not plainly a valid prediction
    request (`http.plain_request`); that one goes to `validating()`, whose models name the problem
    (or take the body, as 3.0 for top_k 3). Its routes are also what /openapi.json describes.
    """
    api = APIGatewayHttpResolver(enable_validation=validated, json_body_deserializer=http.bounded_json)
    http.install(api, logger, get_predictor, validating)
    (_validated_predict if validated else _plain_predict)(api)

    @api.get("/health", summary="Is a model loaded")
    def health() -> Response[str]:
        return http.health(lambda: get_predictor().describe())

    @api.get("/model", summary="The live model: version, metrics, quantization")
    def model() -> dict[str, Any]:
        return get_predictor().describe()

    return api


def _plain_predict(api: APIGatewayHttpResolver) -> None:
    @api.post("/predict", summary="Predict a batch")
    @tracer.capture_method
    def predict() -> dict[str, Any]:
        # http.plain_request's, set by lambda_handler, which sends any other body to validating()
        request = api.context.get("request") or http.plain_request(api.current_event.raw_event)
        if request is None:
            raise RuntimeError("app serves plainly valid requests only: call lambda_handler")
        return serve(request["instances"], request["top_k"])


def _validated_predict(api: APIGatewayHttpResolver) -> None:
    from lambdaforge.runtime.schemas import PredictRequest, PredictResponse

    @api.post("/predict", summary="Predict a batch")
    @tracer.capture_method
    def predict(request: PredictRequest) -> PredictResponse:
        return PredictResponse.model_validate(serve(request.instances, request.top_k))


app = resolver(validated=False)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    refused = http.precheck(event, MAX_BODY_BYTES)
    head = http.head_as_get(event, app)
    try:
        api = app
        if refused is None:
            request = http.plain_request(event)
            method = event.get("requestContext", {}).get("http", {}).get("method", "").upper()
            if request is None and method == "POST":
                api = validating()  # built on first use: a failure here is a 500 the version's metrics count
            else:
                app.append_context(request=request)  # for the route; resolve clears it
        answer = refused.proxy() if refused else api.resolve(event, context)
    except Exception:
        add_metrics(metrics, **http.status_metrics(500))  # the version's own count sees it too, then Lambda's
        raise
    if head:
        answer["body"] = ""
    add_metrics(metrics, **http.status_metrics(answer.get("statusCode", 200)))
    return answer


if (not_loaded := preload()) is not None:
    logger.warning("model not loaded at init", extra={"reason": not_loaded})
