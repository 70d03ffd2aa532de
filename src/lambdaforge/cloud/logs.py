"""Logs of a function or a training job, without looking up log group names."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from lambdaforge.cloud.errors import CloudError
from lambdaforge.cloud.stack import StackRef

FUNCTION_OUTPUTS = {"trigger": "TriggerFunctionName", "quantize": "QuantizeFunctionName",
                    "promote": "PromoteFunctionName", "inference": "InferenceFunctionName"}
TRAINING_GROUP = "/aws/sagemaker/TrainingJobs"


@dataclass(frozen=True)
class LogSource:
    group: str
    stream_prefix: str | None
    label: str


def function_source(ref: StackRef, function: str) -> LogSource:
    if function not in FUNCTION_OUTPUTS:
        raise CloudError(f"unknown function {function!r}; choose one of {', '.join(FUNCTION_OUTPUTS)}")
    name = ref.output(FUNCTION_OUTPUTS[function])
    config = ref.client("lambda").get_function_configuration(FunctionName=name)
    group = (config.get("LoggingConfig") or {}).get("LogGroup") or f"/aws/lambda/{name}"
    return LogSource(group=group, stream_prefix=None, label=f"{function} ({name})")


def training_source(ref: StackRef, job: str | None) -> LogSource:
    sm = ref.client("sagemaker")
    if job is None:
        # newest first in AWS; picked by CreationTime as well, as not every implementation sorts
        jobs = sm.list_training_jobs(NameContains="lf-", SortBy="CreationTime", SortOrder="Descending",
                                     MaxResults=100)["TrainingJobSummaries"]
        if not jobs:
            raise CloudError("no lambdaforge training job yet (names start with lf-)")
        job = str(max(jobs, key=lambda j: j["CreationTime"])["TrainingJobName"])
    return LogSource(group=TRAINING_GROUP, stream_prefix=f"{job}/", label=f"training job {job}")


def events(logs: Any, source: LogSource, since_ms: int) -> Iterator[dict[str, Any]]:
    kwargs: dict[str, Any] = {"logGroupName": source.group, "startTime": since_ms, "interleaved": True}
    if source.stream_prefix:
        kwargs["logStreamNamePrefix"] = source.stream_prefix
    try:
        while True:
            page = logs.filter_log_events(**kwargs)
            for event in page.get("events", []):
                # the prefix is also checked here: some implementations of the API ignore it
                if not source.stream_prefix or str(event.get("logStreamName", "")).startswith(source.stream_prefix):
                    yield event
            if not page.get("nextToken"):
                return
            kwargs["nextToken"] = page["nextToken"]
    except logs.exceptions.ResourceNotFoundException as exc:
        raise CloudError(f"log group {source.group} does not exist yet (nothing has run?)") from exc


def tail(logs: Any, source: LogSource, since_ms: int, emit: Callable[[dict[str, Any]], None], *,
         follow: bool = False, poll_s: float = 2.0, stop: Callable[[], bool] = lambda: False) -> int:
    """Print events since `since_ms`; with follow, keep polling until `stop()` (or Ctrl-C)."""
    seen: set[str] = set()
    count = 0
    cursor = since_ms
    while True:
        for event in events(logs, source, cursor):
            if event["eventId"] in seen:
                continue
            seen.add(event["eventId"])
            cursor = max(cursor, int(event["timestamp"]))
            emit(event)
            count += 1
        if not follow or stop():
            return count
        time.sleep(poll_s)


def parse_since(text: str) -> int:
    """`10m`, `2h`, `1d` or `30s` ago, in epoch milliseconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if not text or text[-1] not in units or not text[:-1].isdigit():
        raise CloudError(f"--since {text!r}: use a number and a unit, like 10m, 2h or 1d")
    return int((time.time() - int(text[:-1]) * units[text[-1]]) * 1000)
