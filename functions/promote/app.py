"""Promote function: publish a version of the inference function pinned to a model and move alias
`live` (canary, finalize, abort), or roll back to the previous version."""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdaforge.observability import make_tracer
from lambdaforge.pipeline.payloads import PromoteRequest
from lambdaforge.pipeline.promote import Promoter
from lambdaforge.pipeline.settings import PipelineSettings

logger = Logger()
tracer = make_tracer()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_parser(model=PromoteRequest)
def lambda_handler(event: PromoteRequest, context: LambdaContext) -> dict[str, Any]:
    answer = Promoter(PipelineSettings.from_env()).handle(event)
    logger.info(f"promote {event.action}", extra=answer)
    return answer
