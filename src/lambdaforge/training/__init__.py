"""The training harness: SageMaker's contract, one entry point (`python -m lambdaforge.training`)."""

from lambdaforge.training.contract import TrainingEnv
from lambdaforge.training.metrics import METRIC_DEFINITIONS, metric_line, parse_line

__all__ = ["METRIC_DEFINITIONS", "TrainingEnv", "metric_line", "parse_line"]
