"""The registry's two rooms on one table (moto, in process): the items keep the layout existing tables
hold, items already in a table are read back, and nothing is written that registry.keys does not define."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from decimal import Decimal
from typing import Any

import boto3
import pytest

from lambdaforge.registry import (
    Catalog,
    ConcurrentUpdateError,
    NoRegistryTableError,
    NothingToRollBackError,
    Runs,
    UnknownVersionError,
    VersionExistsError,
    VersionRecord,
    keys,
)

TIMESTAMPS = {"created_at", "updated_at", "started_at", "running_since"}


@pytest.fixture
def table() -> Iterator[Any]:
    from moto import mock_aws

    with mock_aws():
        ddb = boto3.resource("dynamodb", region_name="us-east-1")
        yield ddb.create_table(
            TableName="lf-registry", BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}])


def items(table: Any) -> dict[str, dict[str, Any]]:
    """sk -> item, without the timestamps (they change every run)."""
    return {i["sk"]: {k: v for k, v in i.items() if k not in TIMESTAMPS} for i in table.scan()["Items"]}


def add_version(catalog: Catalog, recipe: str = "digits") -> int:
    version = catalog.allocate_version(recipe)
    catalog.put_version(VersionRecord(recipe=recipe, version=version, model_uri=f"s3://a/models/v{version}/",
                                      metrics={"accuracy": 0.97}, training_job=f"job-{version}"))
    return version


def test_the_catalogue_writes_the_item_layout_existing_tables_hold(table: Any) -> None:
    catalog = Catalog("lf-registry", table=table)
    add_version(catalog)
    add_version(catalog)
    catalog.set_lambda_version("digits", 1, "7")
    catalog.mark_live("digits", 1)
    catalog.mark_live("digits", 2)
    written = items(table)
    assert written["state"] == {"pk": "recipe#digits", "sk": "state", "next_version": 2, "live": 2, "previous": 1,
                                "history": [1, 2]}
    assert written["version#00000001"] == {
        "pk": "recipe#digits", "sk": "version#00000001", "recipe": "digits", "version": 1,
        "model_uri": "s3://a/models/v1/", "status": "previous", "metrics": {"accuracy": Decimal("0.97")},
        "training_job": "job-1", "lambda_version": "7"}
    assert written["version#00000002"]["status"] == "live"


def test_run_coordination_writes_the_item_layout_existing_tables_hold(table: Any) -> None:
    runs = Runs("lf-registry", table=table)
    assert runs.acquire("digits", "digits-1", "arn:exec:digits-1")
    assert not runs.acquire("digits", "digits-2", "arn:exec:digits-2")
    runs.set_pending("digits", {"recipe": "digits", "s3_uri": "s3://d/b.csv", "version": None})
    runs.record("digits", "digits-1", "RUNNING", dataset="s3://d/a.csv", dataset_version="v1")
    runs.record("digits", "digits-2", "QUEUED", dataset="s3://d/b.csv", behind="digits-1")
    runs.record("_rejected", "rejected-0123", "REJECTED", cause="put data under data/<recipe>/", key="data/x.csv")
    written = items(table)
    assert written["state"] == {"pk": "recipe#digits", "sk": "state", "running": "digits-1",
                                "running_arn": "arn:exec:digits-1",
                                "pending": {"recipe": "digits", "s3_uri": "s3://d/b.csv"}}
    assert written["run#digits-1"] == {"pk": "recipe#digits", "sk": "run#digits-1", "status": "RUNNING",
                                       "dataset": "s3://d/a.csv",
                                       "dataset_version": "v1"}
    assert written["run#digits-2"] == {"pk": "recipe#digits", "sk": "run#digits-2", "status": "QUEUED",
                                       "dataset": "s3://d/b.csv", "behind": "digits-1"}
    assert written["run#rejected-0123"] == {"pk": "recipe#_rejected", "sk": "run#rejected-0123", "status": "REJECTED",
                                            "cause": "put data under data/<recipe>/", "key": "data/x.csv"}
    runs.release("digits", "digits-2")  # only the holder releases
    assert runs.state("digits").running == "digits-1"
    runs.release("digits", "digits-1")
    # the waiting dataset stays until its run has started (a failed start must not lose it)
    assert items(table)["state"] == {"pk": "recipe#digits", "sk": "state",
                                     "pending": {"recipe": "digits", "s3_uri": "s3://d/b.csv"}}
    runs.clear_pending("digits", {"version": "v2", "uploaded_at": "2030-01-01T00:00:00+00:00"})
    assert items(table)["state"] == {"pk": "recipe#digits", "sk": "state"}


def test_items_already_in_a_table_are_read(table: Any) -> None:
    table.put_item(Item={"pk": "recipe#digits", "sk": "state", "live": Decimal(2), "previous": Decimal(1),
                         "history": [Decimal(1), Decimal(2)], "next_version": Decimal(2), "running": "digits-9",
                         "running_arn": "arn:exec:digits-9", "pending": {"key": "data/digits/c.csv"},
                         "last_failure": {"execution": "digits-8", "error": "TrainingJobFailed", "cause": "oom",
                                          "at": "2026-01-01T00:00:00Z"}})
    table.put_item(Item={"pk": "recipe#digits", "sk": "version#00000002", "recipe": "digits", "version": Decimal(2),
                         "model_uri": "s3://a/v2/", "status": "live", "metrics": {"accuracy": Decimal("0.5")},
                         "lambda_version": "12", "created_at": "2026-01-01T00:00:00+00:00"})
    table.put_item(Item={"pk": "recipe#digits", "sk": "run#digits-8", "status": "FAILED", "error": "TrainingJobFailed",
                         "cause": "oom", "ended_at": "2026-01-01T00:00:00Z"})
    catalog, runs = Catalog("lf-registry", table=table), Runs("lf-registry", table=table)
    state = catalog.state("digits")
    assert (state.live, state.previous, state.candidate, state.history) == (2, 1, None, (1, 2))
    live = catalog.live_model("digits")
    assert live is not None and (live.version, live.metrics, live.lambda_version) == (2, {"accuracy": 0.5}, "12")
    run_state = runs.state("digits")
    assert (run_state.running, run_state.running_arn) == ("digits-9", "arn:exec:digits-9")
    assert run_state.pending == {"key": "data/digits/c.csv"}
    assert run_state.last_failure is not None and run_state.last_failure["error"] == "TrainingJobFailed"
    assert [r["status"] for r in runs.log("digits")] == ["FAILED"]
    assert catalog.allocate_version("digits") == 3


def test_nothing_is_written_that_the_key_module_does_not_define(table: Any) -> None:
    catalog, runs = Catalog("lf-registry", table=table), Runs("lf-registry", table=table)
    add_version(catalog)
    add_version(catalog)
    catalog.set_lambda_version("digits", 2, "9")
    catalog.mark_live("digits", 1)
    catalog.mark_live("digits", 2)
    catalog.mark_rolled_back("digits", 1)
    runs.acquire("digits", "digits-1", "arn")
    runs.set_pending("digits", {"key": "k"})
    runs.record("digits", "digits-1", "RUNNING", dataset="d", dataset_version="v", behind="x", cause="c", key="k")
    allowed = {"state": keys.STATE_ATTRIBUTES, "version#": keys.VERSION_ATTRIBUTES, "run#": keys.RUN_ATTRIBUTES}
    for item in table.scan()["Items"]:
        kind = next(k for k in allowed if item["sk"].startswith(k))
        assert set(item) <= allowed[kind], (item["sk"], set(item) - allowed[kind])
        if kind == "version#":
            assert item["status"] in keys.VERSION_STATUSES
        if kind == "run#":
            assert item["status"] in keys.RUN_STATUSES
    assert {f.name for f in fields(VersionRecord)} | {keys.PK, keys.SK} == keys.VERSION_ATTRIBUTES


def test_a_version_is_written_once(table: Any) -> None:
    catalog = Catalog("lf-registry", table=table)
    add_version(catalog)
    with pytest.raises(VersionExistsError, match="digits version 1 already exists"):
        catalog.put_version(VersionRecord(recipe="digits", version=1, model_uri="s3://a/other/"))
    assert catalog.version("digits", 1).model_uri == "s3://a/models/v1/"


def test_missing_versions_and_rollbacks_are_refused(table: Any) -> None:
    catalog = Catalog("lf-registry", table=table)
    with pytest.raises(UnknownVersionError, match="has no version 4"):
        catalog.version("digits", 4)
    with pytest.raises(NothingToRollBackError, match="no live model to roll back from"):
        catalog.rollback_target("digits")


def test_a_registry_needs_a_table() -> None:
    with pytest.raises(NoRegistryTableError, match="REGISTRY_TABLE"):
        Catalog("")
    with pytest.raises(NoRegistryTableError, match="REGISTRY_TABLE"):
        Runs("")


def _with_stale_reads(catalog: Catalog, stale: Any) -> None:
    """The catalogue as a promoter that read the state before another promoter wrote it."""
    catalog.state = lambda recipe: stale  # type: ignore[method-assign]


@pytest.mark.parametrize("first_live", [True, False])
def test_two_promotions_that_race_cannot_both_win(table: Any, first_live: bool) -> None:
    catalog = Catalog("lf-registry", table=table)
    v1, v2, v3 = (add_version(catalog) for _ in range(3))
    if first_live:
        catalog.mark_live("digits", v1)
    read_by_a = catalog.state("digits")
    catalog.mark_live("digits", v2)  # promoter B writes first
    racer = Catalog("lf-registry", table=table)
    _with_stale_reads(racer, read_by_a)
    with pytest.raises(ConcurrentUpdateError, match="another promotion or rollback won"):
        racer.mark_live("digits", v3)
    state = catalog.state("digits")
    assert state.live == v2 and v3 not in state.history  # A's write did not land


def test_a_rollback_racing_a_promotion_does_not_overwrite_it(table: Any) -> None:
    catalog = Catalog("lf-registry", table=table)
    v1, v2, v3 = (add_version(catalog) for _ in range(3))
    catalog.mark_live("digits", v1)
    catalog.mark_live("digits", v2)
    read_by_rollback = catalog.state("digits")
    catalog.mark_live("digits", v3)
    racer = Catalog("lf-registry", table=table)
    _with_stale_reads(racer, read_by_rollback)
    with pytest.raises(ConcurrentUpdateError):
        racer.mark_rolled_back("digits", v1)
    assert catalog.state("digits").live == v3


def test_waiting_data_is_replaced_only_by_newer_data(table: Any) -> None:
    runs = Runs("lf-registry", table=table)
    newer = {"version": "b", "uploaded_at": "2030-01-01T00:00:10+00:00"}
    assert not runs.set_pending("digits", newer)  # no run holds the lock: nothing would ever start it
    assert runs.acquire("digits", "digits-1", "arn:exec:digits-1")
    assert runs.set_pending("digits", newer)
    assert not runs.set_pending("digits", {"version": "a", "uploaded_at": "2030-01-01T00:00:05+00:00"})
    runs.clear_pending("digits", {"version": "a", "uploaded_at": "2030-01-01T00:00:05+00:00"})  # an older run
    assert runs.state("digits").pending == newer
    assert runs.set_pending("digits", {"version": "c", "uploaded_at": "2030-01-01T00:00:10+00:00"})  # a tie: last
    runs.clear_pending("digits", {"version": "c", "uploaded_at": "2030-01-01T00:00:10+00:00"})
    assert runs.state("digits").pending is None


def test_the_high_water_mark_moves_only_forward_and_only_once_a_run_started(table: Any) -> None:
    runs = Runs("lf-registry", table=table)
    assert runs.acquire("digits", "digits-1", "arn", "2030-01-01T00:00:10+00:00")
    assert runs.state("digits").newest_started is None  # not before its start succeeded
    runs.started("digits", {"version": "b", "uploaded_at": "2030-01-01T00:00:10+00:00"})
    runs.started("digits", {"version": "a", "uploaded_at": "2030-01-01T00:00:05+00:00"})  # never backwards
    state = runs.state("digits")
    assert state.newest_started == "2030-01-01T00:00:10+00:00"
    assert state.is_older("2030-01-01T00:00:05+00:00") and not state.is_older("2030-01-01T00:00:10+00:00")
    runs.release("digits", "digits-1")
    assert not runs.acquire("digits", "digits-0", "arn", "2030-01-01T00:00:05+00:00")  # older: refused
    assert runs.acquire("digits", "digits-2", "arn", "2030-01-01T00:00:11+00:00")
