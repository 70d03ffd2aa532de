"""Inference function: API Gateway HTTP API (payload 2.0) -> the lambdaforge runtime.

(No `from __future__ import annotations`: Powertools reads the route annotations at run time.)

Thin on purpose: routes parse and shape; `lambdaforge.runtime` loads, validates and predicts, and
`lambdaforge.runtime.http` holds the prechecks and the error answers (always a 4xx JSON answer
naming the problem for bad input, never a 500).
"""


import time
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdaforge.observability import add_metrics, make_metrics, make_tracer
from lambdaforge.runtime import get_predictor, http, preload
from lambdaforge.runtime.schemas import PredictRequest, PredictResponse

logger = Logger()
tracer = make_tracer()
metrics = make_metrics()
http.version_dimension(metrics)
app = APIGatewayHttpResolver(enable_validation=True, json_body_deserializer=http.bounded_json)
http.install(app, logger, get_predictor)
MAX_BODY_BYTES = http.max_body_bytes()


@app.post("/predict", summary="Predict a batch")
@tracer.capture_method
def predict(request: PredictRequest) -> PredictResponse:
    predictor = get_predictor()
    t0 = time.perf_counter()
    results = predictor.predict(request.instances, top_k=request.top_k)
    latency = (time.perf_counter() - t0) * 1000
    add_metrics(metrics, PredictLatency=(MetricUnit.Milliseconds, latency),
                BatchSize=(MetricUnit.Count, len(request.instances)))
    return PredictResponse.build(predictor.describe(), results, latency)


@app.get("/health", summary="Is a model loaded")
def health() -> Response[str]:
    return http.health(lambda: get_predictor().describe())


@app.get("/model", summary="The live model: version, metrics, quantization")
def model() -> dict[str, Any]:
    return get_predictor().describe()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    refused = http.precheck(event, MAX_BODY_BYTES)
    head = http.head_as_get(event, app)
    try:
        answer = refused.proxy() if refused else app.resolve(event, context)
    except Exception:
        add_metrics(metrics, **http.status_metrics(500))  # the version's own count sees it too, then Lambda's
        raise
    if head:
        answer["body"] = ""
    add_metrics(metrics, **http.status_metrics(answer.get("statusCode", 200)))
    return answer


if (not_loaded := preload()) is not None:
    logger.warning("model not loaded at init", extra={"reason": not_loaded})
