"""CloudWatch alarms as AWS runs them, where moto 5 leaves them inert: patches for `fidelity`.

moto stores alarms and metric data but never evaluates one against the other, and it has no
DescribeAlarmHistory. A canary's decision depends on both (an alarm that fired and cleared during
the window is in its history only), so here:
- every state change of an alarm (SetAlarmState, or an evaluation below) is recorded as AWS records
  it: a StateUpdate history item with the old and new state in HistoryData. The history outlives
  the alarm, as CloudWatch keeps it after DeleteAlarms.
- PutMetricAlarm on an alarm that exists replaces its configuration and keeps its state, as AWS does
  (moto makes a new alarm, in OK): only DeleteAlarms and a new PutMetricAlarm start an alarm afresh.
- DescribeAlarmHistory answers from that record (AlarmName, HistoryItemType, StartDate, EndDate,
  MaxRecords, NextToken, ScanBy).
- PutMetricData evaluates the metric alarms that watch what was put, over their last
  EvaluationPeriods periods: metric alarms (Sum, Average, Minimum, Maximum, SampleCount) and metric
  math alarms whose expression uses + - * / on their queries. AWS evaluates every minute whether
  data came or not; here evaluation happens when data comes, so an alarm does not go back to OK by
  itself while nothing is put (SetAlarmState does that, as in tests).
"""

from __future__ import annotations

import ast
import json
import operator
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

Patch = tuple[Any, str, Any]
_HISTORY = "_lambdaforge_alarm_history"
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanThreshold": operator.gt, "GreaterThanOrEqualToThreshold": operator.ge,
    "LessThanThreshold": operator.lt, "LessThanOrEqualToThreshold": operator.le,
}
_BINARY: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
}


def _utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value), UTC)
    text = str(value)
    try:
        return _utc(float(text))
    except ValueError:
        return _utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


def _backend_of(alarm: Any) -> Any:
    from moto.cloudwatch.models import cloudwatch_backends

    parts = str(alarm.alarm_arn).split(":")  # arn:aws:cloudwatch:REGION:ACCOUNT:alarm:NAME
    return cloudwatch_backends[parts[4]][parts[3]]


def history(backend: Any) -> list[dict[str, Any]]:
    """The backend's alarm history, oldest first (a fresh backend, after a reset, starts empty)."""
    items: list[dict[str, Any]] = backend.__dict__.setdefault(_HISTORY, [])
    return items


def _record(alarm: Any, old: str, new: str, reason: str) -> None:
    at = datetime.now(UTC)
    data = {"version": "1.0", "oldState": {"stateValue": old},
            "newState": {"stateValue": new, "stateReason": reason}}
    history(_backend_of(alarm)).append({
        "AlarmName": alarm.name, "AlarmType": "MetricAlarm", "Timestamp": at, "HistoryItemType": "StateUpdate",
        "HistorySummary": f"Alarm updated from {old} to {new}", "HistoryData": json.dumps(data)})


# --- evaluation
_STATS: dict[str, Callable[[list[float]], float]] = {
    "Sum": sum, "Minimum": min, "Maximum": max, "SampleCount": lambda v: float(len(v)),
    "Average": lambda v: sum(v) / len(v),
}


def _stat(values: list[float], stat: str) -> float | None:
    """One period's statistic; None without data, or for a statistic not evaluated locally (percentiles)."""
    if not values or stat not in _STATS:
        return None
    return float(_STATS[stat](values))


def _series(backend: Any, namespace: str, name: str, dims: list[Any], stat: str, period: int,
            buckets: list[datetime]) -> list[float | None]:
    """One value per period starting at each of `buckets` (None: no data), for the exact dimension set."""
    wanted = sorted((str(d.name), str(d.value)) for d in dims)
    points = [m for m in backend.get_all_metrics()
              if m.namespace == namespace and m.name == name
              and sorted((str(d.name), str(d.value)) for d in m.dimensions) == wanted]
    out: list[float | None] = []
    for start in buckets:
        end = start + timedelta(seconds=period)
        values: list[float] = []
        for m in points:
            if start <= _utc(m.timestamp) < end:
                if hasattr(m, "value"):
                    values.append(float(m.value))
                else:  # a statistic set: its sum stands for it (enough for Sum-based alarms)
                    values.append(float(getattr(m, "sum_stat", 0.0)))
        out.append(_stat(values, stat))
    return out


def _expression(text: str, series: dict[str, list[float | None]], n: int) -> list[float | None]:
    def value(node: ast.AST, i: int) -> float | None:
        if isinstance(node, ast.Expression):
            return value(node.body, i)
        if isinstance(node, ast.Name):
            return series[node.id][i] if node.id in series else None
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = value(node.left, i), value(node.right, i)
            if left is None or right is None or (isinstance(node.op, ast.Div) and right == 0):
                return None
            return _BINARY[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = value(node.operand, i)
            return None if inner is None else -inner
        raise ValueError(f"metric math {text!r} is not evaluated locally")

    tree = ast.parse(text, mode="eval")
    return [value(tree, i) for i in range(n)]


def _alarm_series(backend: Any, alarm: Any, now: datetime) -> list[float | None] | None:
    """The alarm's values over its last EvaluationPeriods periods; None if it is not evaluated locally."""
    periods = int(alarm.evaluation_periods or 1)
    if alarm.metric_data_queries:
        period = int(next((q.metric_stat.period for q in alarm.metric_data_queries if q.metric_stat), 60) or 60)
    else:
        period = int(alarm.period or 60)
    end = datetime.fromtimestamp((int(now.timestamp()) // period + 1) * period, UTC)
    buckets = [end - timedelta(seconds=period * k) for k in range(periods, 0, -1)]
    if not alarm.metric_data_queries:
        if not alarm.metric_name or alarm.extended_statistic:
            return None
        return _series(backend, alarm.namespace, alarm.metric_name, alarm.dimensions, str(alarm.statistic), period,
                       buckets)
    series: dict[str, list[float | None]] = {}
    result: list[float | None] | None = None
    for q in alarm.metric_data_queries:
        if q.metric_stat:
            m = q.metric_stat.metric
            series[q.id] = _series(backend, m.namespace, m.metric_name, m.dimensions, str(q.metric_stat.stat),
                                   int(q.metric_stat.period or period), buckets)
    for q in alarm.metric_data_queries:
        if q.expression:
            try:
                series[q.id] = _expression(str(q.expression), series, len(buckets))
            except (ValueError, SyntaxError):
                return None
        if str(q.return_data).lower() in ("true", "none") or q.return_data is True or q.return_data is None:
            result = series.get(q.id, result)
    return result


def _watches(alarm: Any, namespace: str, names: set[str]) -> bool:
    if alarm.metric_data_queries:
        return any(q.metric_stat and q.metric_stat.metric.namespace == namespace
                   and q.metric_stat.metric.metric_name in names for q in alarm.metric_data_queries)
    return bool(alarm.namespace == namespace and alarm.metric_name in names)


def evaluate(backend: Any, alarm: Any, now: datetime | None = None) -> None:
    """Move the alarm to ALARM or OK as CloudWatch's evaluation of its datapoints would."""
    values = _alarm_series(backend, alarm, now or datetime.now(UTC))
    compare = _COMPARE.get(str(alarm.comparison_operator))
    if values is None or compare is None:
        return
    present = [v for v in values if v is not None]
    if not present:
        return  # missing data: notBreaching and missing both keep the alarm where it is here
    breaching = sum(1 for v in present if compare(v, float(alarm.threshold)))
    needed = int(alarm.datapoints_to_alarm or alarm.evaluation_periods or 1)
    state = "ALARM" if breaching >= needed else "OK"
    if state != alarm.state_value:
        reason = (f"Threshold Crossed: {breaching} datapoint(s) of the last {len(values)} were "
                  f"{alarm.comparison_operator} {alarm.threshold}")
        alarm.update_state(reason, json.dumps({"version": "1.0", "recentDatapoints": present}), state)


# --- the patches
def patches() -> list[Patch]:
    from moto.cloudwatch.models import Alarm, CloudWatchBackend
    from moto.cloudwatch.responses import CloudWatchResponse
    from moto.core.responses import ActionResult

    update_state = Alarm.update_state
    put_metric_data = CloudWatchBackend.put_metric_data
    put_metric_alarm = CloudWatchBackend.put_metric_alarm

    def stateful_put_metric_alarm(backend: Any, *args: Any, **kwargs: Any) -> Any:
        name = kwargs["name"] if "name" in kwargs else args[0]
        old = backend.alarms.get(name)
        alarm = put_metric_alarm(backend, *args, **kwargs)
        if old is not None:  # "When you update an existing alarm, its state is left unchanged"
            for attr in ("state_value", "state_reason", "state_reason_data", "state_updated_timestamp"):
                setattr(alarm, attr, getattr(old, attr))
        return alarm

    def recorded_update_state(alarm: Any, reason: str, reason_data: str, state_value: str) -> None:
        old = alarm.state_value
        update_state(alarm, reason, reason_data, state_value)
        if old != state_value:  # AWS records transitions, not a SetAlarmState to the state it is in
            _record(alarm, old, state_value, reason)

    def evaluated_put_metric_data(backend: Any, namespace: str, metric_data: list[dict[str, Any]]) -> None:
        put_metric_data(backend, namespace, metric_data)
        names = {str(m.get("MetricName")) for m in metric_data}
        for alarm in list(backend.alarms.values()):
            if _watches(alarm, namespace, names):
                evaluate(backend, alarm)

    def describe_alarm_history(response: Any) -> Any:
        name = response._get_param("AlarmName")
        kind = response._get_param("HistoryItemType")
        start, end = response._get_param("StartDate"), response._get_param("EndDate")
        items = [i for i in history(response.cloudwatch_backend)
                 if (not name or i["AlarmName"] == name) and (not kind or i["HistoryItemType"] == kind)
                 and (start is None or i["Timestamp"] >= _utc(start)) and (end is None or i["Timestamp"] <= _utc(end))]
        if response._get_param("ScanBy") != "TimestampAscending":
            items.reverse()  # newest first, CloudWatch's default
        offset = int(response._get_param("NextToken") or 0)
        limit = int(response._get_param("MaxRecords") or 50)
        page: dict[str, Any] = {"AlarmHistoryItems": items[offset:offset + limit]}
        if offset + limit < len(items):
            page["NextToken"] = str(offset + limit)
        return ActionResult(page)

    return [(Alarm, "update_state", recorded_update_state),
            (CloudWatchBackend, "put_metric_data", evaluated_put_metric_data),
            (CloudWatchBackend, "put_metric_alarm", stateful_put_metric_alarm),
            (CloudWatchResponse, "describe_alarm_history", describe_alarm_history)]
