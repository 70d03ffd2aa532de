"""Promote function: publish a version of the inference function pinned to a model and move alias
`live` (canary, finalize, abort), or roll back to the previous version."""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdaforge.observability import make_tracer
from lambdaforge.pipeline.errors import PromotionError
from lambdaforge.pipeline.payloads import PromoteRequest
from lambdaforge.pipeline.promote import Promoter
from lambdaforge.pipeline.settings import PipelineSettings

logger = Logger()
tracer = make_tracer()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_parser(model=PromoteRequest)
def lambda_handler(event: PromoteRequest, context: LambdaContext) -> dict[str, Any]:
    promoter = Promoter(PipelineSettings.from_env())
    if event.action == "rollback":
        result = promoter.rollback(event.recipe)
    elif event.version is None:
        raise PromotionError(f"action {event.action!r} needs a version")
    elif event.action == "canary":
        result = promoter.canary(event.recipe, event.version)
    elif event.action == "finalize":
        result = promoter.finalize(event.recipe, event.version)
    else:
        result = promoter.abort(event.recipe, event.version)
    logger.info(f"promote {event.action}", extra=result)
    return {"action": event.action, "recipe": event.recipe, "version": event.version, **result}
