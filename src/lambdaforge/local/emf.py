"""Embedded metric format: what CloudWatch Logs does with a function's EMF lines in AWS, done locally.

In Lambda, a log line that is a JSON object with an `_aws` key (Powertools' `Metrics` prints one per
invocation) becomes metric data: for each directive in `_aws.CloudWatchMetrics`, each metric it names
is put in its Namespace, once per dimension set, with the values of the line's top-level keys of
those names, at `_aws.Timestamp` (milliseconds). Nothing does that for moto, so the local cloud
passes every function log line through `put` before the invocation's answer is returned.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

MAX_DIMENSIONS = 30  # CloudWatch's limit per metric; a directive beyond it is dropped, as AWS drops it


def metric_data(line: str) -> list[tuple[str, list[dict[str, Any]]]]:
    """(namespace, PutMetricData MetricData) for each directive of an EMF line; [] for any other line."""
    text = line.strip()
    if not text.startswith("{") or '"_aws"' not in text:
        return []
    try:
        doc = json.loads(text)
        meta = doc["_aws"]
        at = datetime.fromtimestamp(int(meta["Timestamp"]) / 1000, UTC).replace(tzinfo=None)  # moto keeps naive UTC
        directives = list(meta["CloudWatchMetrics"])
    except (ValueError, KeyError, TypeError):
        return []  # not valid EMF: CloudWatch keeps it as a log line only
    out: list[tuple[str, list[dict[str, Any]]]] = []
    for directive in directives:
        try:
            namespace = str(directive["Namespace"])
            dimension_sets = [list(s) for s in directive.get("Dimensions") or [[]]]
            metrics = list(directive["Metrics"])
        except (KeyError, TypeError):
            continue
        data: list[dict[str, Any]] = []
        for keys in dimension_sets:
            if len(keys) > MAX_DIMENSIONS or any(k not in doc for k in keys):
                continue
            dims = [{"Name": str(k), "Value": str(doc[k])} for k in keys]
            for metric in metrics:
                name = str(metric.get("Name", ""))
                raw = doc.get(name)
                values = raw if isinstance(raw, list) else [raw]
                for value in values:
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        datum: dict[str, Any] = {"MetricName": name, "Dimensions": dims, "Value": float(value),
                                                 "Timestamp": at}
                        if metric.get("Unit"):
                            datum["Unit"] = str(metric["Unit"])
                        data.append(datum)
        if data:
            out.append((namespace, data))
    return out


def put(account: str, region: str, line: str) -> int:
    """Put the metrics of an EMF line into moto's CloudWatch as CloudWatch Logs would; how many data."""
    found = metric_data(line)
    if not found:
        return 0
    from moto.cloudwatch.models import cloudwatch_backends

    backend = cloudwatch_backends[account][region]
    for namespace, data in found:
        backend.put_metric_data(namespace, data)
    return sum(len(d) for _, d in found)
