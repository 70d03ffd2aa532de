"""What decides a canary: the new version's own answer counts, and every alarm's history over the window.

The inference function publishes, per response, `Answers`, `ClientErrors` (4xx), `ServerErrors` (5xx)
and `Unavailable` (503) as EMF metrics with the dimensions `service` and `FunctionVersion`, so each
published version has its own series. Lambda's `Errors` and `Duration` cannot see a model that answers
503 or 422 to everything: the function itself succeeds.

At canary time two alarms are made for the new version, named from the function and the version so a
retried step puts the same ones again (a new canary of the same version, another run's, deletes them
first: they start without the earlier attempt's state):
- `...-server-errors`: any 5xx in a minute (Sum of ServerErrors > 0). A healthy model never answers 5xx.
- `...-client-errors`: more than half of the version's answers in a minute are 4xx (metric math
  `c / a`). Clients send bad input to every version alike, so a few 4xx say nothing; a model that
  refuses most of what it gets is broken (wrong limits, wrong input contract).

At the end of the window nothing is taken from a single look at the alarms: an alarm that fired and
cleared while the canary ran is in its history (DescribeAlarmHistory, StateUpdate items since the
canary began), and, since metrics are the source of truth and alarms evaluate them only once a period,
the version's ServerErrors are summed over the whole window too. Any of these aborts.

The window is read only once it has settled: EMF metrics extracted from the function's logs, and the
alarms' evaluation of them, reach CloudWatch 1-3 minutes late, so the workflow waits MetricsSettleSeconds
after the canary, and a verdict asked for sooner refuses to decide (CanaryNotSettledError).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from lambdaforge.pipeline.errors import CanaryNotSettledError

# What lambdaforge.runtime.http publishes (a test keeps these equal; the runtime imports numpy, which
# the promote function does not have)
VERSION_DIMENSION = "FunctionVersion"
ANSWERS = "Answers"
CLIENT_ERRORS = "ClientErrors"
SERVER_ERRORS = "ServerErrors"
DEFAULT_NAMESPACE = "lambdaforge"
PERIOD = 60
CLIENT_ERROR_RATE = 0.5  # the share of a minute's answers that may be 4xx before the version's alarm fires
ALARM_SUFFIXES = ("server-errors", "client-errors")


@dataclass(frozen=True)
class VersionMetrics:
    """Where one published version's answer counts land: its namespace and exact dimension set."""

    namespace: str
    dimensions: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, configuration: dict[str, Any], lambda_version: str) -> VersionMetrics:
        """From the version's own configuration: Powertools takes the namespace and the `service`
        dimension from these variables, so the alarms name exactly what the version emits."""
        env = (configuration.get("Environment") or {}).get("Variables") or {}
        dims: list[tuple[str, str]] = []
        if env.get("POWERTOOLS_SERVICE_NAME"):
            dims.append(("service", str(env["POWERTOOLS_SERVICE_NAME"])))
        dims.append((VERSION_DIMENSION, lambda_version))
        return cls(namespace=str(env.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE), dimensions=tuple(dims))

    def cloudwatch_dimensions(self) -> list[dict[str, str]]:
        return [{"Name": k, "Value": v} for k, v in self.dimensions]

    def metric(self, name: str) -> dict[str, Any]:
        return {"Namespace": self.namespace, "MetricName": name, "Dimensions": self.cloudwatch_dimensions()}


def alarm_names(function: str, lambda_version: str) -> list[str]:
    """The version's alarms; deterministic, so a retried canary step puts (overwrites) the same ones."""
    return [f"{function}-canary-v{lambda_version}-{suffix}"[:255] for suffix in ALARM_SUFFIXES]


def parse_time(value: str) -> datetime:
    at = datetime.fromisoformat(value)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


class CanaryWatch:
    def __init__(self, cloudwatch: Any, function: str, static_alarms: Iterable[str] = ()) -> None:
        self.cw = cloudwatch
        self.function = function
        self.static_alarms = tuple(static_alarms)

    def arm(self, lambda_version: str, metrics: VersionMetrics, *, fresh: bool = False) -> list[str]:
        """Put the version's alarms (PutMetricAlarm replaces the configuration of an alarm of the same name,
        so a retried step puts the same ones). `fresh`: a new canary of the version (another run's; the
        names depend on the version only): the alarms are deleted first, since PutMetricAlarm on an existing
        alarm keeps its state, and an earlier attempt's ALARM would decide this one."""
        server, client = alarm_names(self.function, lambda_version)
        if fresh:
            self.cw.delete_alarms(AlarmNames=[server, client])  # deleting alarms that do not exist is no error
        common: dict[str, Any] = {"EvaluationPeriods": 1, "ComparisonOperator": "GreaterThanThreshold",
                                  "TreatMissingData": "notBreaching", "ActionsEnabled": False}
        self.cw.put_metric_alarm(
            AlarmName=server, AlarmDescription=f"Version {lambda_version} of {self.function} answered a 5xx "
                                               "during its canary.",
            **metrics.metric(SERVER_ERRORS), Statistic="Sum", Period=PERIOD, Threshold=0.0, **common)
        self.cw.put_metric_alarm(
            AlarmName=client, AlarmDescription=f"Over {CLIENT_ERROR_RATE:.0%} of the answers of version "
                                               f"{lambda_version} of {self.function} in a minute were 4xx.",
            Metrics=[
                {"Id": "c", "MetricStat": {"Metric": metrics.metric(CLIENT_ERRORS), "Period": PERIOD, "Stat": "Sum"},
                 "ReturnData": False},
                {"Id": "a", "MetricStat": {"Metric": metrics.metric(ANSWERS), "Period": PERIOD, "Stat": "Sum"},
                 "ReturnData": False},
                {"Id": "rate", "Expression": "c / a", "Label": "4xx share", "ReturnData": True},
            ],
            Threshold=CLIENT_ERROR_RATE, **common)
        return [server, client]

    def disarm(self, lambda_version: str) -> None:
        """Delete the version's alarms once its canary is decided (their history stays, as CloudWatch keeps it)."""
        self.cw.delete_alarms(AlarmNames=alarm_names(self.function, lambda_version))

    def watched(self, lambda_version: str | None) -> list[str]:
        return [*self.static_alarms, *(alarm_names(self.function, lambda_version) if lambda_version else [])]

    def firing(self, names: list[str]) -> list[str]:
        """The alarms in ALARM now."""
        if not names:
            return []
        out = self.cw.describe_alarms(AlarmNames=names)
        return [a["AlarmName"] for a in out.get("MetricAlarms", []) if a.get("StateValue") == "ALARM"]

    def fired_since(self, names: list[str], since: datetime, until: datetime) -> list[str]:
        """The alarms that went into ALARM at any time in [since, until], cleared since or not."""
        fired = []
        for name in names:
            kwargs: dict[str, Any] = {"AlarmName": name, "HistoryItemType": "StateUpdate", "StartDate": since,
                                      "EndDate": until, "MaxRecords": 100}
            while True:
                out = self.cw.describe_alarm_history(**kwargs)
                if any(_to_alarm(item) for item in out.get("AlarmHistoryItems", [])):
                    fired.append(name)
                    break
                if not out.get("NextToken"):
                    break
                kwargs["NextToken"] = out["NextToken"]
        return fired

    def server_errors(self, metrics: VersionMetrics, since: datetime, until: datetime) -> float:
        """The version's 5xx answers over the window, from the metric itself."""
        seconds = max((until - since).total_seconds(), 1.0)
        period = max(PERIOD, math.ceil(seconds / 1440 / PERIOD) * PERIOD)  # at most 1,440 datapoints
        out = self.cw.get_metric_statistics(**metrics.metric(SERVER_ERRORS), StartTime=since,
                                            EndTime=until + timedelta(seconds=PERIOD), Period=period,
                                            Statistics=["Sum"])
        return float(sum(point.get("Sum", 0.0) for point in out.get("Datapoints", [])))

    def verdict(self, lambda_version: str, metrics: VersionMetrics, since: datetime,
                until: datetime | None = None, *, settled_at: datetime | None = None) -> list[str]:
        """Why the canary must not go on ([] when nothing was wrong at any time in the window).

        `settled_at`: the earliest time the whole window is in CloudWatch (its start, plus the canary's
        length, plus the time EMF extraction and alarm evaluation take). Asked sooner, it decides nothing:
        errors of the window's last minutes would not be visible yet (CanaryNotSettledError)."""
        until = until or datetime.now(UTC)
        if settled_at is not None and until < settled_at:
            raise CanaryNotSettledError(
                f"the canary of version {lambda_version} of {self.function} began at {since.isoformat()}; its "
                f"metrics are complete in CloudWatch only from {settled_at.isoformat()} (the canary's length and "
                f"the metrics' settle time), and it is {until.isoformat()}: {(settled_at - until).total_seconds():g} "
                "s too early to decide, so nothing is decided from a window whose last minutes may not show yet")
        names = self.watched(lambda_version)
        fired = self.fired_since(names, since, until)
        reasons = [f"alarm {n} fired during the canary" for n in fired]
        reasons += [f"alarm {n} is in ALARM" for n in self.firing(names) if n not in fired]
        errors = self.server_errors(metrics, since, until)
        if errors > 0:
            reasons.append(f"version {lambda_version} answered {errors:g} 5xx during the canary ({SERVER_ERRORS})")
        return reasons


def _to_alarm(item: dict[str, Any]) -> bool:
    """A StateUpdate history item whose new state is ALARM (HistoryData is JSON with oldState/newState)."""
    try:
        data = json.loads(item.get("HistoryData") or "{}")
        if isinstance(data, dict) and isinstance(data.get("newState"), dict):
            return bool(data["newState"].get("stateValue") == "ALARM")
    except ValueError:
        pass
    return str(item.get("HistorySummary", "")).rstrip().endswith("to ALARM")
