"""Trigger function: S3 object-created events (through EventBridge) start retraining runs;
the workflow's last step calls it back to release the recipe's run lock; a run that ended badly
outside the workflow's own failure path (EventBridge's status-change event) is cleaned up.

Permanent problems (a bad upload) are recorded and announced, never raised: raising would make
Lambda retry an event that can never succeed. Transient ones raise and are retried, then go to
the dead-letter queue.
"""

import functools
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.parser import ValidationError, parse
from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdaforge.observability import make_tracer
from lambdaforge.pipeline.datasets import Upload
from lambdaforge.pipeline.payloads import ReleaseRequest, RunEnded
from lambdaforge.pipeline.settings import PipelineSettings
from lambdaforge.pipeline.trigger import RunRecovery, Trigger

RUN_ENDED = "Step Functions Execution Status Change"
logger = Logger()
tracer = make_tracer()
settings = PipelineSettings.from_env()
idempotency = IdempotencyConfig(event_key_jmespath="identity", expires_after_seconds=24 * 3600)
persistence = DynamoDBPersistenceLayer(table_name=settings.idempotency_table or "unset")


@functools.cache
def trigger() -> Trigger:
    return Trigger(settings)  # one client set per warm container


@idempotent_function(data_keyword_argument="upload", config=idempotency, persistence_store=persistence)
def handle_upload(upload: dict[str, Any]) -> dict[str, Any]:
    outcome = trigger().on_upload(Upload.from_json(upload))
    logger.info("upload handled", extra=outcome.to_json())
    return outcome.to_json()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("action") == "release":
        outcome = trigger().release(parse(event=event, model=ReleaseRequest))
        logger.info("run released", extra=outcome.to_json())
        return outcome.to_json()
    if event.get("detail-type") == RUN_ENDED:
        outcome = RunRecovery(trigger()).recover(RunEnded.model_validate(event.get("detail") or {}))
        logger.info("run recovered", extra=outcome.to_json())
        return outcome.to_json()
    try:
        upload = Upload.from_event(parse(event=event, model=S3EventNotificationEventBridgeModel))
    except ValidationError as exc:
        logger.warning("not an S3 object-created event; ignored", extra={"reason": str(exc)[:500]})
        return {"status": "ignored", "detail": "not an S3 object-created event"}
    idempotency.register_lambda_context(context)
    return handle_upload(upload=upload.to_json())
