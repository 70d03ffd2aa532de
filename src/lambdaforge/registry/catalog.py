"""The version catalogue: per recipe, the model versions and which one is candidate, live and previous.

Versions are written with a condition that they do not exist: nothing is overwritten. The pointers
live in the recipe's state item, beside the run coordination (runs.py), which this module never touches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lambdaforge.registry import keys
from lambdaforge.registry.errors import (
    ConcurrentUpdateError,
    NothingToRollBackError,
    UnknownVersionError,
    VersionExistsError,
)
from lambdaforge.registry.keys import VersionStatus
from lambdaforge.registry.store import condition_failed, now, open_table, plain, read_state, to_dynamo


@dataclass(frozen=True)
class VersionRecord:
    recipe: str
    version: int
    model_uri: str
    status: VersionStatus = "candidate"
    report_uri: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    quantization: str | None = None
    training_job: str | None = None
    dataset_version: str | None = None
    execution: str | None = None
    lambda_version: str | None = None
    created_at: str = field(default_factory=now)
    canary_started_at: str | None = None
    canary_execution: str | None = None  # the run whose canary `canary_started_at` began

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> VersionRecord:
        data = plain(item)
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class CatalogState:
    """The recipe's pointers: live, previous, candidate, and the promotion history (oldest first)."""

    recipe: str
    live: int | None = None
    previous: int | None = None
    candidate: int | None = None
    history: tuple[int, ...] = ()

    @classmethod
    def from_item(cls, recipe: str, data: dict[str, Any]) -> CatalogState:
        return cls(recipe=recipe, live=data.get(keys.LIVE), previous=data.get(keys.PREVIOUS),
                   candidate=data.get(keys.CANDIDATE), history=tuple(data.get(keys.HISTORY, [])))


class Catalog:
    def __init__(self, table_name: str, *, table: Any = None) -> None:
        self.table = open_table(table_name, table)

    # --- reading
    def state(self, recipe: str) -> CatalogState:
        return CatalogState.from_item(recipe, read_state(self.table, recipe))

    def version(self, recipe: str, version: int) -> VersionRecord:
        item = self.table.get_item(Key=keys.version_key(recipe, version), ConsistentRead=True).get("Item")
        if not item:
            raise UnknownVersionError(f"recipe {recipe!r} has no version {version}")
        return VersionRecord.from_item(item)

    def versions(self, recipe: str) -> list[VersionRecord]:
        from boto3.dynamodb.conditions import Key

        items: list[dict[str, Any]] = []
        condition = Key(keys.PK).eq(keys.recipe_pk(recipe)) & Key(keys.SK).begins_with(keys.VERSION_SK_PREFIX)
        kwargs: dict[str, Any] = {"KeyConditionExpression": condition}
        while True:
            page = self.table.query(**kwargs)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return [VersionRecord.from_item(i) for i in items]

    def live_model(self, recipe: str) -> VersionRecord | None:
        state = self.state(recipe)
        return self.version(recipe, state.live) if state.live is not None else None

    def version_for_job(self, recipe: str, training_job: str) -> VersionRecord | None:
        """The version already made from a training job (a retried quantize step must not make two)."""
        return next((v for v in self.versions(recipe) if v.training_job == training_job), None)

    # --- versions
    def allocate_version(self, recipe: str) -> int:
        out = self.table.update_item(
            Key=keys.state_key(recipe), UpdateExpression=f"ADD {keys.NEXT_VERSION} :one",
            ExpressionAttributeValues={":one": 1}, ReturnValues="UPDATED_NEW")
        return int(out["Attributes"][keys.NEXT_VERSION])

    def put_version(self, record: VersionRecord) -> None:
        from botocore.exceptions import ClientError

        item = {**keys.version_key(record.recipe, record.version), **to_dynamo(record.__dict__)}
        try:
            self.table.put_item(Item=item, ConditionExpression=f"attribute_not_exists({keys.SK})")
        except ClientError as exc:
            if condition_failed(exc):
                raise VersionExistsError(f"{record.recipe} version {record.version} already exists") from exc
            raise
        self.table.update_item(Key=keys.state_key(record.recipe),
                               UpdateExpression=f"SET {keys.CANDIDATE} = :v, {keys.UPDATED_AT} = :t",
                               ExpressionAttributeValues={":v": record.version, ":t": now()})

    def set_lambda_version(self, recipe: str, version: int, lambda_version: str) -> None:
        self.table.update_item(Key=keys.version_key(recipe, version),
                               UpdateExpression=f"SET {keys.LAMBDA_VERSION} = :l",
                               ConditionExpression=f"attribute_exists({keys.SK})",
                               ExpressionAttributeValues={":l": lambda_version})

    def set_canary_started(self, recipe: str, version: int, at: str, execution: str) -> str:
        """Record when the version's canary began in run `execution`; the recorded time.

        Once per run: the same run's retried canary step keeps its first time, so the window the decision
        reads covers every request the version served. Another run (a retry of the same model) starts a
        new window: the earlier attempt's start would put its errors, and its alarms' history, in this one."""
        from botocore.exceptions import ClientError

        started, ran = keys.CANARY_STARTED_AT, keys.CANARY_EXECUTION
        try:
            self.table.update_item(
                Key=keys.version_key(recipe, version), UpdateExpression=f"SET {started} = :t, {ran} = :e",
                ConditionExpression=f"attribute_exists({keys.SK}) AND (attribute_not_exists({started}) "
                                    f"OR attribute_not_exists({ran}) OR {ran} <> :e)",
                ExpressionAttributeValues={":t": at, ":e": execution})
        except ClientError as exc:
            if not condition_failed(exc):
                raise
            record = self.version(recipe, version)  # UnknownVersionError when there is no such version
            if record.canary_started_at is None or record.canary_execution != execution:
                raise  # changed between the write and the read: nothing to keep
            return record.canary_started_at
        return at

    def _set_status(self, recipe: str, version: int, status: VersionStatus) -> None:
        self.table.update_item(Key=keys.version_key(recipe, version),
                               UpdateExpression="SET #s = :s", ExpressionAttributeNames={"#s": keys.STATUS},
                               ConditionExpression=f"attribute_exists({keys.SK})",
                               ExpressionAttributeValues={":s": status})

    def _set_pointers(self, read: CatalogState, live: int, previous: int | None, history: list[int], *,
                      clear_candidate: bool) -> None:
        """Write the pointers only if live is still what `read` saw: two promotions cannot both win."""
        from botocore.exceptions import ClientError

        expression = (f"SET {keys.LIVE} = :v, {keys.PREVIOUS} = :p, {keys.HISTORY} = :h, {keys.UPDATED_AT} = :t"
                      + (f" REMOVE {keys.CANDIDATE}" if clear_candidate else ""))
        values: dict[str, Any] = {":v": live, ":p": previous, ":h": history, ":t": now()}
        if read.live is None:
            condition = f"attribute_not_exists({keys.LIVE}) OR attribute_type({keys.LIVE}, :null)"
            values[":null"] = "NULL"
        else:
            condition = f"{keys.LIVE} = :read"
            values[":read"] = read.live
        try:
            self.table.update_item(Key=keys.state_key(read.recipe), UpdateExpression=expression,
                                   ConditionExpression=condition, ExpressionAttributeValues=values)
        except ClientError as exc:
            if condition_failed(exc):
                raise ConcurrentUpdateError(
                    f"recipe {read.recipe!r}: live changed from {read.live} while moving it to {live}; "
                    "another promotion or rollback won. Check `lambdaforge status` and retry.") from exc
            raise

    def mark_live(self, recipe: str, version: int, read: CatalogState | None = None) -> CatalogState:
        """`version` is now live; the old live becomes previous. Appends to the promotion history.

        `read`: the state the caller decided on; the write fails if live moved since."""
        state = read or self.state(recipe)
        history = [v for v in state.history if v != version] + [version]
        previous = state.live if state.live not in (None, version) else state.previous
        self._set_pointers(state, version, previous, history, clear_candidate=True)
        self._set_status(recipe, version, "live")
        if state.live not in (None, version):
            self._set_status(recipe, int(state.live), "previous")
        return self.state(recipe)

    def rollback_target(self, recipe: str) -> tuple[CatalogState, VersionRecord]:
        state = self.state(recipe)
        if state.live is None:
            raise NothingToRollBackError(f"recipe {recipe!r} has no live model to roll back from")
        history = list(state.history)
        earlier = history[:history.index(state.live)] if state.live in history else []
        if not earlier:
            raise NothingToRollBackError(f"recipe {recipe!r}: version {state.live} is the first live version; "
                                         "there is nothing earlier to roll back to")
        return state, self.version(recipe, earlier[-1])

    def mark_rolled_back(self, recipe: str, to_version: int, read: CatalogState | None = None) -> CatalogState:
        """Live moves back to `to_version`; the version rolled back from leaves the history."""
        state = read or self.state(recipe)
        history = [v for v in state.history if v != state.live]
        idx = history.index(to_version) if to_version in history else len(history)
        previous = history[idx - 1] if idx > 0 else None
        self._set_pointers(state, to_version, previous, history, clear_candidate=False)
        if state.live is not None:
            self._set_status(recipe, state.live, "rolled-back")
        self._set_status(recipe, to_version, "live")
        return self.state(recipe)
