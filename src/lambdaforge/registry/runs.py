"""Run coordination: at most one retraining run per recipe, data arriving meanwhile coalesced, and a run log.

The lock (`running`) and the one `pending` dataset live in the recipe's state item beside the
catalogue's pointers (catalog.py), which this module never touches. The workflow's failure path writes
the run log and `last_failure` itself (the ASL's RecordFailure and RecordLastFailure, same layout).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lambdaforge.registry import keys
from lambdaforge.registry.keys import RunStatus
from lambdaforge.registry.store import condition_failed, now, open_table, plain, read_state, to_dynamo


@dataclass(frozen=True)
class RunState:
    """Who holds the recipe's lock, the dataset waiting for it, and the last failed run."""

    recipe: str
    running: str | None = None
    running_arn: str | None = None
    running_since: str | None = None
    pending: dict[str, Any] | None = None
    newest_started: str | None = None
    last_failure: dict[str, Any] | None = None

    @classmethod
    def from_item(cls, recipe: str, data: dict[str, Any]) -> RunState:
        return cls(recipe=recipe, running=data.get(keys.RUNNING), running_arn=data.get(keys.RUNNING_ARN),
                   running_since=data.get(keys.RUNNING_SINCE), pending=data.get(keys.PENDING),
                   newest_started=data.get(keys.NEWEST_STARTED), last_failure=data.get(keys.LAST_FAILURE))

    def is_older(self, uploaded_at: str) -> bool:
        """Data uploaded before the newest data a run has started on: training it would undo that run."""
        return bool(uploaded_at and self.newest_started and uploaded_at < self.newest_started)


class Runs:
    def __init__(self, table_name: str, *, table: Any = None) -> None:
        self.table = open_table(table_name, table)

    def state(self, recipe: str) -> RunState:
        return RunState.from_item(recipe, read_state(self.table, recipe))

    # --- the lock
    def acquire(self, recipe: str, execution: str, execution_arn: str, uploaded_at: str = "") -> str | None:
        """Take the recipe's lock for `execution`: "taken", "held" (it had it already), or None: another run
        has it, or (with `uploaded_at`) a run has already started on newer data (`started` keeps that mark)."""
        from botocore.exceptions import ClientError

        sets = f"{keys.RUNNING} = :e, {keys.RUNNING_ARN} = :a, {keys.RUNNING_SINCE} = :t"
        condition = f"(attribute_not_exists({keys.RUNNING}) OR {keys.RUNNING} = :e)"
        values: dict[str, Any] = {":e": execution, ":a": execution_arn, ":t": now()}
        if uploaded_at:
            condition += f" AND (attribute_not_exists({keys.NEWEST_STARTED}) OR {keys.NEWEST_STARTED} <= :u)"
            values[":u"] = uploaded_at
        try:
            out = self.table.update_item(Key=keys.state_key(recipe), UpdateExpression=f"SET {sets}",
                                         ConditionExpression=condition, ExpressionAttributeValues=values,
                                         ReturnValues="UPDATED_OLD")
        except ClientError as exc:
            if condition_failed(exc):
                return None
            raise
        return "held" if out.get("Attributes", {}).get(keys.RUNNING) == execution else "taken"

    def force_release(self, recipe: str, execution: str) -> None:
        """Drop a lock whose execution is no longer running (aborted, timed out, never started): the same
        conditional write as `release`, named for what the caller knows."""
        self.release(recipe, execution)

    def release(self, recipe: str, execution: str) -> None:
        """Release the lock if `execution` holds it. The pending dataset stays until its run has started."""
        from botocore.exceptions import ClientError

        try:
            self.table.update_item(Key=keys.state_key(recipe),
                                   UpdateExpression=f"REMOVE {keys.RUNNING}, {keys.RUNNING_ARN}",
                                   ConditionExpression=f"{keys.RUNNING} = :e",
                                   ExpressionAttributeValues={":e": execution})
        except ClientError as exc:
            if not condition_failed(exc):
                raise

    # --- the pending queue (one slot: the newest dataset wins)
    def started(self, recipe: str, dataset: dict[str, Any]) -> None:
        """A run has started on `dataset`: it becomes the high-water mark (unless newer data started first),
        so that older data delivered later never starts a run. Moved only once the start succeeded."""
        from botocore.exceptions import ClientError

        uploaded_at = str(dataset.get("uploaded_at") or "")
        if not uploaded_at:
            return
        try:
            self.table.update_item(
                Key=keys.state_key(recipe), UpdateExpression=f"SET {keys.NEWEST_STARTED} = :u",
                ConditionExpression=f"attribute_not_exists({keys.NEWEST_STARTED}) OR {keys.NEWEST_STARTED} <= :u",
                ExpressionAttributeValues={":u": uploaded_at})
        except ClientError as exc:
            if not condition_failed(exc):
                raise

    def set_pending(self, recipe: str, dataset: dict[str, Any]) -> bool:
        """Make `dataset` the one waiting for the running run to end, unless newer data already waits, a
        run has already started on newer data, or no run holds the lock any more (its release has already
        looked for waiting data: data set now would wait for nothing).

        Newer means a later upload time: an event delivered late never replaces what came after it.
        False when it was not set; the caller reads the state to tell why."""
        from botocore.exceptions import ClientError

        uploaded_at = str(dataset.get("uploaded_at") or "")
        condition = (f"attribute_exists({keys.RUNNING}) AND "
                     "(attribute_not_exists(#p) OR attribute_not_exists(#p.#u) OR #p.#u <= :u)")
        if uploaded_at:
            condition += f" AND (attribute_not_exists({keys.NEWEST_STARTED}) OR {keys.NEWEST_STARTED} <= :u)"
        try:
            self.table.update_item(
                Key=keys.state_key(recipe), UpdateExpression=f"SET #p = :d, {keys.UPDATED_AT} = :t",
                ConditionExpression=condition, ExpressionAttributeNames={"#p": keys.PENDING, "#u": "uploaded_at"},
                ExpressionAttributeValues={":d": to_dynamo(dataset), ":t": now(), ":u": uploaded_at})
        except ClientError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def clear_pending(self, recipe: str, started: dict[str, Any]) -> None:
        """A run has started on `started`: drop the waiting dataset if it is that one or strictly older
        (event times have one-second resolution: another dataset of the same second stays)."""
        from botocore.exceptions import ClientError

        try:
            self.table.update_item(
                Key=keys.state_key(recipe), UpdateExpression="REMOVE #p",
                ConditionExpression="#p.#v = :v OR attribute_not_exists(#p.#u) OR #p.#u < :u",
                ExpressionAttributeNames={"#p": keys.PENDING, "#u": "uploaded_at", "#v": "version"},
                ExpressionAttributeValues={":v": started["version"], ":u": str(started.get("uploaded_at") or "")})
        except ClientError as exc:
            if not condition_failed(exc):  # nothing waits, or newer data does: it stays
                raise

    # --- the run log
    def record(self, recipe: str, execution: str, status: RunStatus, *, dataset: str | None = None,
               dataset_version: str | None = None, behind: str | None = None, cause: str | None = None,
               key: str | None = None) -> None:
        """Write the run's status and whichever details are given (None leaves an attribute as it is)."""
        attrs = {keys.DATASET: dataset, keys.DATASET_VERSION: dataset_version, keys.BEHIND: behind,
                 keys.CAUSE: cause, keys.UPLOAD_KEY: key}
        given = {k: v for k, v in attrs.items() if v is not None}
        names = {"#s": keys.STATUS, **{f"#{k}": k for k in given}}  # names may be DynamoDB reserved words
        values = {":s": status, ":t": now(), **{f":{k}": to_dynamo(v) for k, v in given.items()}}
        sets = ["#s = :s", f"{keys.UPDATED_AT} = :t", f"{keys.STARTED_AT} = if_not_exists({keys.STARTED_AT}, :t)"]
        sets += [f"#{k} = :{k}" for k in given]
        self.table.update_item(Key=keys.run_key(recipe, execution), UpdateExpression="SET " + ", ".join(sets),
                               ExpressionAttributeNames=names, ExpressionAttributeValues=values)

    def run(self, recipe: str, execution: str) -> dict[str, Any]:
        """One run's record (empty when there is none), read consistently."""
        item = self.table.get_item(Key=keys.run_key(recipe, execution), ConsistentRead=True).get("Item")
        return plain(item) if item else {}

    def log(self, recipe: str, limit: int = 20) -> list[dict[str, Any]]:
        """Up to `limit` of the recipe's runs, in descending sort-key order."""
        from boto3.dynamodb.conditions import Key

        condition = Key(keys.PK).eq(keys.recipe_pk(recipe)) & Key(keys.SK).begins_with(keys.RUN_SK_PREFIX)
        page = self.table.query(KeyConditionExpression=condition, ScanIndexForward=False, Limit=limit)
        return [plain(i) for i in page.get("Items", [])]
