"""Quantize function (container: onnx + onnxruntime, no torch): training artifact -> gated, versioned model.

Errors propagate: the workflow's Catch records them in the registry and announces them.
"""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdaforge.observability import make_tracer
from lambdaforge.pipeline.payloads import QuantizeRequest
from lambdaforge.pipeline.quantize_step import QuantizeStep
from lambdaforge.pipeline.settings import PipelineSettings

logger = Logger()
tracer = make_tracer()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_parser(model=QuantizeRequest)
def lambda_handler(event: QuantizeRequest, context: LambdaContext) -> dict[str, Any]:
    result = QuantizeStep(PipelineSettings.from_env()).run(event)
    logger.info("quantized", extra={"gate_passed": result.gate_passed, "version": result.version,
                                    "chosen": result.chosen, "reason": result.gate_reason})
    return result.model_dump()
