"""Metric lines the harness prints, and the MetricDefinitions regexes SageMaker uses to read them.

The template and `train --cloud` take METRIC_DEFINITIONS from here (through the trigger's
job request), so the regexes and the printed format cannot drift apart; a test checks both.
"""

from __future__ import annotations

import re

PREFIX = "[lambdaforge]"
_NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"

# name SageMaker shows -> the key printed on a metric line
_KEYS = {
    "train:loss": "train_loss",
    "train:samples_per_sec": "samples_per_sec",
    "train:epoch": "epoch",
    "test:metric": "test_metric",
    "test:accuracy": "test_accuracy",
    "export:parity_max_abs_diff": "parity_max_abs_diff",
}

METRIC_DEFINITIONS: list[dict[str, str]] = [
    {"Name": name, "Regex": rf"{re.escape(PREFIX)}.*\b{key}={_NUMBER}"} for name, key in _KEYS.items()
]


# Progress the CLI shows; printed on metric lines too, but not SageMaker metrics.
STEP = "step"
TOTAL_STEPS = "total_steps"
_PROGRESS = {key: re.compile(rf"{re.escape(PREFIX)}.*\b{key}=([0-9]+)\b") for key in (STEP, TOTAL_STEPS)}


def printed_key(name: str) -> str:
    """The key a metric is printed under (`train:loss` -> `train_loss`)."""
    return _KEYS[name]


def metric_line(**values: float | int) -> str:
    parts = []
    for key, value in values.items():
        parts.append(f"{key}={value:.6g}" if isinstance(value, float) else f"{key}={value}")
    return f"{PREFIX} " + " ".join(parts)


def parse_line(line: str) -> dict[str, float]:
    """What SageMaker would extract from one log line, by the shipped regexes."""
    found: dict[str, float] = {}
    for definition in METRIC_DEFINITIONS:
        match = re.search(definition["Regex"], line)
        if match:
            found[definition["Name"]] = float(match.group(1))
    return found


def parse_progress(line: str) -> dict[str, int]:
    """The step and total steps a metric line reports, if any."""
    found: dict[str, int] = {}
    for key, pattern in _PROGRESS.items():
        match = pattern.search(line)
        if match:
            found[key] = int(match.group(1))
    return found
