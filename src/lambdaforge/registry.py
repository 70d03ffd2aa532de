"""The model registry: one DynamoDB table that records, per recipe, the versions and the pointers.

Items (pk = `recipe#<name>`):
- sk `state`: live, previous, candidate, history (promotion order), next_version, the run lock
  (`running`) and the one coalesced `pending` dataset;
- sk `version#<n>`: a model version (model_uri, metrics, report, training job, Lambda version);
- sk `run#<execution>`: a retraining run (status, dataset, failure).

Versions are written with a condition that they do not exist: nothing is overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from lambdaforge.errors import LambdaforgeError


class RegistryError(LambdaforgeError):
    """The registry does not hold what the caller needs (unknown version, nothing to roll back to)."""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _plain(value: Any) -> Any:
    """DynamoDB returns Decimal for every number; give callers ints and floats."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _dynamo(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _dynamo(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_dynamo(v) for v in value]
    return value


def pk(recipe: str) -> str:
    return f"recipe#{recipe}"


def version_sk(version: int) -> str:
    return f"version#{version:08d}"


@dataclass(frozen=True)
class VersionRecord:
    recipe: str
    version: int
    model_uri: str
    status: str = "candidate"
    report_uri: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    quantization: str | None = None
    training_job: str | None = None
    dataset_version: str | None = None
    execution: str | None = None
    lambda_version: str | None = None
    created_at: str = field(default_factory=now)

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> VersionRecord:
        data = _plain(item)
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class RecipeState:
    recipe: str
    live: int | None = None
    previous: int | None = None
    candidate: int | None = None
    history: tuple[int, ...] = ()
    running: str | None = None
    running_arn: str | None = None
    pending: dict[str, Any] | None = None
    last_failure: dict[str, Any] | None = None

    @classmethod
    def from_item(cls, recipe: str, item: dict[str, Any] | None) -> RecipeState:
        data = _plain(item or {})
        return cls(recipe=recipe, live=data.get("live"), previous=data.get("previous"),
                   candidate=data.get("candidate"), history=tuple(data.get("history", [])),
                   running=data.get("running"), running_arn=data.get("running_arn"), pending=data.get("pending"),
                   last_failure=data.get("last_failure"))


class Registry:
    def __init__(self, table_name: str, *, table: Any = None) -> None:
        if not table_name and table is None:
            raise RegistryError("no registry table configured (REGISTRY_TABLE)")
        if table is None:
            from lambdaforge.aws import resource

            table = resource("dynamodb").Table(table_name)
        self.table = table

    # --- reading
    def state(self, recipe: str) -> RecipeState:
        item = self.table.get_item(Key={"pk": pk(recipe), "sk": "state"}, ConsistentRead=True).get("Item")
        return RecipeState.from_item(recipe, item)

    def version(self, recipe: str, version: int) -> VersionRecord:
        item = self.table.get_item(Key={"pk": pk(recipe), "sk": version_sk(version)}, ConsistentRead=True).get("Item")
        if not item:
            raise RegistryError(f"recipe {recipe!r} has no version {version}")
        return VersionRecord.from_item(item)

    def versions(self, recipe: str) -> list[VersionRecord]:
        from boto3.dynamodb.conditions import Key

        items: list[dict[str, Any]] = []
        condition = Key("pk").eq(pk(recipe)) & Key("sk").begins_with("version#")
        kwargs: dict[str, Any] = {"KeyConditionExpression": condition}
        while True:
            page = self.table.query(**kwargs)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return [VersionRecord.from_item(i) for i in items]

    def runs(self, recipe: str, limit: int = 20) -> list[dict[str, Any]]:
        from boto3.dynamodb.conditions import Key

        page = self.table.query(KeyConditionExpression=Key("pk").eq(pk(recipe)) & Key("sk").begins_with("run#"),
                                ScanIndexForward=False, Limit=limit)
        return [_plain(i) for i in page.get("Items", [])]

    def live_model(self, recipe: str) -> VersionRecord | None:
        state = self.state(recipe)
        return self.version(recipe, state.live) if state.live is not None else None

    def version_for_job(self, recipe: str, training_job: str) -> VersionRecord | None:
        """The version already made from a training job (a retried quantize step must not make two)."""
        return next((v for v in self.versions(recipe) if v.training_job == training_job), None)

    # --- versions
    def allocate_version(self, recipe: str) -> int:
        out = self.table.update_item(
            Key={"pk": pk(recipe), "sk": "state"}, UpdateExpression="ADD next_version :one",
            ExpressionAttributeValues={":one": 1}, ReturnValues="UPDATED_NEW")
        return int(out["Attributes"]["next_version"])

    def put_version(self, record: VersionRecord) -> None:
        from botocore.exceptions import ClientError

        item = {"pk": pk(record.recipe), "sk": version_sk(record.version), **_dynamo(record.__dict__)}
        try:
            self.table.put_item(Item=item, ConditionExpression="attribute_not_exists(sk)")
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise RegistryError(f"{record.recipe} version {record.version} already exists") from exc
            raise
        self.table.update_item(Key={"pk": pk(record.recipe), "sk": "state"},
                               UpdateExpression="SET candidate = :v, updated_at = :t",
                               ExpressionAttributeValues={":v": record.version, ":t": now()})

    def set_lambda_version(self, recipe: str, version: int, lambda_version: str) -> None:
        self.table.update_item(Key={"pk": pk(recipe), "sk": version_sk(version)},
                               UpdateExpression="SET lambda_version = :l",
                               ConditionExpression="attribute_exists(sk)",
                               ExpressionAttributeValues={":l": lambda_version})

    def _set_status(self, recipe: str, version: int, status: str) -> None:
        self.table.update_item(Key={"pk": pk(recipe), "sk": version_sk(version)},
                               UpdateExpression="SET #s = :s", ExpressionAttributeNames={"#s": "status"},
                               ConditionExpression="attribute_exists(sk)", ExpressionAttributeValues={":s": status})

    def mark_live(self, recipe: str, version: int) -> RecipeState:
        """`version` is now live; the old live becomes previous. Appends to the promotion history."""
        state = self.state(recipe)
        history = [v for v in state.history if v != version] + [version]
        previous = state.live if state.live not in (None, version) else state.previous
        self.table.update_item(
            Key={"pk": pk(recipe), "sk": "state"},
            UpdateExpression="SET live = :v, previous = :p, history = :h, updated_at = :t REMOVE candidate",
            ExpressionAttributeValues={":v": version, ":p": previous, ":h": history, ":t": now()})
        self._set_status(recipe, version, "live")
        if state.live not in (None, version):
            self._set_status(recipe, int(state.live), "previous")
        return self.state(recipe)

    def rollback_target(self, recipe: str) -> tuple[RecipeState, VersionRecord]:
        state = self.state(recipe)
        if state.live is None:
            raise RegistryError(f"recipe {recipe!r} has no live model to roll back from")
        history = list(state.history)
        earlier = history[:history.index(state.live)] if state.live in history else []
        if not earlier:
            raise RegistryError(f"recipe {recipe!r}: version {state.live} is the first live version; "
                                "there is nothing earlier to roll back to")
        return state, self.version(recipe, earlier[-1])

    def mark_rolled_back(self, recipe: str, to_version: int) -> RecipeState:
        """Live moves back to `to_version`; the version rolled back from leaves the history."""
        state = self.state(recipe)
        history = [v for v in state.history if v != state.live]
        idx = history.index(to_version) if to_version in history else len(history)
        previous = history[idx - 1] if idx > 0 else None
        self.table.update_item(
            Key={"pk": pk(recipe), "sk": "state"},
            UpdateExpression="SET live = :v, previous = :p, history = :h, updated_at = :t",
            ExpressionAttributeValues={":v": to_version, ":p": previous, ":h": history, ":t": now()})
        if state.live is not None:
            self._set_status(recipe, state.live, "rolled-back")
        self._set_status(recipe, to_version, "live")
        return self.state(recipe)

    # --- runs: at most one per recipe; data arriving meanwhile is coalesced into `pending`
    def acquire_run(self, recipe: str, execution: str, execution_arn: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.table.update_item(
                Key={"pk": pk(recipe), "sk": "state"},
                UpdateExpression="SET running = :e, running_arn = :a, running_since = :t",
                ConditionExpression="attribute_not_exists(running) OR running = :e",
                ExpressionAttributeValues={":e": execution, ":a": execution_arn, ":t": now()})
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def force_release(self, recipe: str, execution: str) -> None:
        """Drop a lock whose execution is no longer running (it was aborted or timed out)."""
        from botocore.exceptions import ClientError

        try:
            self.table.update_item(Key={"pk": pk(recipe), "sk": "state"},
                                   UpdateExpression="REMOVE running, running_arn",
                                   ConditionExpression="running = :e", ExpressionAttributeValues={":e": execution})
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    def set_pending(self, recipe: str, dataset: dict[str, Any]) -> None:
        """The newest dataset waiting for the running run to end; an older pending one is replaced."""
        self.table.update_item(Key={"pk": pk(recipe), "sk": "state"},
                               UpdateExpression="SET pending = :d, updated_at = :t",
                               ExpressionAttributeValues={":d": _dynamo(dataset), ":t": now()})

    def release_run(self, recipe: str, execution: str) -> dict[str, Any] | None:
        """Release the lock held by `execution`; return (and clear) the pending dataset, if any."""
        from botocore.exceptions import ClientError

        try:
            out = self.table.update_item(
                Key={"pk": pk(recipe), "sk": "state"}, UpdateExpression="REMOVE running, running_arn, pending",
                ConditionExpression="running = :e", ExpressionAttributeValues={":e": execution},
                ReturnValues="ALL_OLD")
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None
            raise
        pending = out.get("Attributes", {}).get("pending")
        return _plain(pending) if pending else None

    def record_run(self, recipe: str, execution: str, status: str, **attrs: Any) -> None:
        given = {k: v for k, v in attrs.items() if v is not None}
        names = {"#s": "status", **{f"#{k}": k for k in given}}  # names may be DynamoDB reserved words
        values = {":s": status, ":t": now(), **{f":{k}": _dynamo(v) for k, v in given.items()}}
        sets = ["#s = :s", "updated_at = :t", "started_at = if_not_exists(started_at, :t)"]
        sets += [f"#{k} = :{k}" for k in given]
        self.table.update_item(Key={"pk": pk(recipe), "sk": f"run#{execution}"},
                               UpdateExpression="SET " + ", ".join(sets),
                               ExpressionAttributeNames=names, ExpressionAttributeValues=values)

    def record_failure(self, recipe: str, execution: str, error: str, cause: str) -> None:
        failure = {"execution": execution, "error": error, "cause": cause[:2000], "at": now()}
        self.record_run(recipe, execution, "FAILED", error=error, cause=cause[:2000])
        self.table.update_item(Key={"pk": pk(recipe), "sk": "state"}, UpdateExpression="SET last_failure = :f",
                               ExpressionAttributeValues={":f": failure})
