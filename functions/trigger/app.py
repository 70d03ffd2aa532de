"""Trigger function: S3 object-created events (through EventBridge) start retraining runs;
the workflow's last step calls it back to release the recipe's run lock.

Permanent problems (a bad upload) are recorded and announced, never raised: raising would make
Lambda retry an event that can never succeed. Transient ones raise and are retried, then go to
the dead-letter queue.
"""

import dataclasses
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.parser import ValidationError, parse
from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdaforge.observability import make_tracer
from lambdaforge.pipeline.datasets import Upload
from lambdaforge.pipeline.payloads import ReleaseRequest
from lambdaforge.pipeline.settings import PipelineSettings
from lambdaforge.pipeline.trigger import Trigger

logger = Logger()
tracer = make_tracer()
settings = PipelineSettings.from_env()
idempotency = IdempotencyConfig(event_key_jmespath="identity", expires_after_seconds=24 * 3600)
persistence = DynamoDBPersistenceLayer(table_name=settings.idempotency_table or "unset")
_trigger: Trigger | None = None


def trigger() -> Trigger:
    global _trigger  # noqa: PLW0603 - one client set per warm container
    if _trigger is None:
        _trigger = Trigger(settings)
    return _trigger


@idempotent_function(data_keyword_argument="upload", config=idempotency, persistence_store=persistence)
def handle_upload(upload: dict[str, Any]) -> dict[str, Any]:
    outcome = trigger().on_upload(Upload(**upload["object"]))
    logger.info("upload handled", extra=outcome.to_json())
    return outcome.to_json()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("action") == "release":
        request = parse(event=event, model=ReleaseRequest)
        outcome = trigger().release(request.recipe, request.execution, request.status)
        logger.info("run released", extra=outcome.to_json())
        return outcome.to_json()
    try:
        s3_event = parse(event=event, model=S3EventNotificationEventBridgeModel)
    except ValidationError as exc:
        logger.warning("not an S3 object-created event; ignored", extra={"reason": str(exc)[:500]})
        return {"status": "ignored", "detail": "not an S3 object-created event"}
    obj = s3_event.detail.object
    upload = Upload(bucket=s3_event.detail.bucket.name, key=obj.key, size=int(obj.size or 0), etag=obj.etag or "",
                    version_id=obj.version_id)
    idempotency.register_lambda_context(context)
    return handle_upload(upload={"identity": upload.identity, "object": dataclasses.asdict(upload)})
