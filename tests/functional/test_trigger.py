"""The trigger function under moto: uploads start exactly one run, bad uploads start none and are
announced, data arriving during a run is coalesced, and a stale lock does not block forever."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from lambdaforge.local.context import LocalLambdaContext
from lambdaforge.registry import Runs
from lambdaforge.training import METRIC_DEFINITIONS
from tests.conftest import load_event
from tests.functional import moto_stack
from tests.functional.moto_stack import Stack

CSV = b"label," + b",".join(f"p{i}".encode() for i in range(64)) + b"\n" + b"3," + b",".join([b"1"] * 64) + b"\n"


@pytest.fixture
def stack() -> Iterator[Stack]:
    with moto_stack.running() as stack:
        yield stack


def call(stack: Stack, event: dict[str, Any]) -> dict[str, Any]:
    handler = stack.handler("trigger")
    result: dict[str, Any] = handler.lambda_handler(event, LocalLambdaContext(function_name="trigger"))
    return result


def test_an_upload_starts_one_run_with_the_training_contract(stack: Stack) -> None:
    out = call(stack, stack.s3_event("data/digits/batch-1.csv", CSV))
    assert out["status"] == "started", out
    (execution,) = stack.executions()
    assert execution["name"] == out["execution"] and execution["name"].startswith("digits-")
    described = stack.client("stepfunctions").describe_execution(executionArn=execution["executionArn"])
    payload = json.loads(described["input"])
    assert payload["recipe"] == "digits"
    assert payload["dataset"]["s3_uri"] == f"s3://{stack.data_bucket}/data/digits/batch-1.csv"
    hps = payload["training"]["hyperparameters"]
    assert json.loads(hps["recipe"]) == "digits" and json.loads(hps["sagemaker_program"]) == "train.py"
    bundle = json.loads(hps["sagemaker_submit_directory"])
    key = bundle.split(f"s3://{stack.artifacts_bucket}/", 1)[1]
    assert stack.client("s3").head_object(Bucket=stack.artifacts_bucket, Key=key)["ContentLength"] > 1000
    assert payload["training"]["metric_definitions"] == METRIC_DEFINITIONS
    assert payload["training"]["job_name"].startswith("lf-digits-") and len(payload["training"]["job_name"]) <= 63
    state = Runs(stack.registry_table).state("digits")
    assert state.running == execution["name"]


def test_duplicate_events_start_exactly_one_execution(stack: Stack) -> None:
    event = stack.s3_event("data/digits/batch-1.csv", CSV)
    first = call(stack, event)
    second = call(stack, event)  # the same event delivered twice
    redelivered = dict(event, id="another-event-id-for-the-same-object")
    third = call(stack, redelivered)  # S3 sometimes emits two events for one write
    assert first["status"] == "started"
    assert second == first and third == first  # Powertools idempotency answered from its store
    assert len(stack.executions()) == 1


def test_the_source_bundle_is_uploaded_once_per_content(stack: Stack) -> None:
    call(stack, stack.s3_event("data/digits/a.csv", CSV))
    call(stack, stack.s3_event("data/text/b.csv", b"text,label\nhi,a\n"))
    keys = [o["Key"] for o in stack.client("s3").list_objects_v2(Bucket=stack.artifacts_bucket,
                                                                 Prefix="source/")["Contents"]]
    assert len(keys) == 1 and keys[0].endswith("/sourcedir.tar.gz")


@pytest.mark.parametrize(("key", "body", "reason"), [
    ("data/digits/notes.txt", b"hello", "accepts .csv files"),
    ("data/nope/batch.csv", CSV, "unknown recipe 'nope'"),
    ("data/digits/empty.csv", b"", "the file is empty"),
    ("data/loose.csv", CSV, "put data under data/<recipe>/"),
])
def test_a_bad_upload_starts_nothing_and_is_announced(stack: Stack, key: str, body: bytes, reason: str) -> None:
    out = call(stack, stack.s3_event(key, body))
    assert out["status"] == "rejected" and reason in out["detail"]
    assert stack.executions() == []
    messages = stack.notifications()
    assert len(messages) == 1 and reason in messages[0]
    recipe = "digits" if "digits" in key else "_rejected"
    runs = Runs(stack.registry_table).log(recipe)
    assert runs and runs[0]["status"] == "REJECTED"


def test_an_oversized_upload_is_rejected(stack: Stack) -> None:
    stack.env["MAX_UPLOAD_BYTES"] = "100"
    out = call(stack, stack.s3_event("data/digits/big.csv", CSV))
    assert out["status"] == "rejected" and "over the limit of 100" in out["detail"]
    assert stack.executions() == []


def test_a_folder_dataset_starts_on_its_marker_with_its_hyperparameters(stack: Stack) -> None:
    assert call(stack, stack.s3_event("data/digits/ds1/part-1.csv", CSV))["status"] == "ignored"
    assert call(stack, stack.s3_event("data/digits/ds1/part-2.csv", CSV))["status"] == "ignored"
    assert stack.executions() == []
    out = call(stack, stack.s3_event("data/digits/ds1/_READY", json.dumps({"hyperparameters": {"epochs": 3}}).encode()))
    assert out["status"] == "started"
    (execution,) = stack.executions()
    payload = json.loads(stack.client("stepfunctions").describe_execution(
        executionArn=execution["executionArn"])["input"])
    assert payload["dataset"]["s3_uri"] == f"s3://{stack.data_bucket}/data/digits/ds1/"
    assert json.loads(payload["training"]["hyperparameters"]["epochs"]) == 3


def test_a_bad_marker_is_rejected(stack: Stack) -> None:
    out = call(stack, stack.s3_event("data/digits/ds2/_READY", b"{not json"))
    assert out["status"] == "rejected" and "not JSON" in out["detail"]
    out = call(stack, stack.s3_event("data/digits/ds3/_READY", json.dumps({"hyperparameters": {"x": [1]}}).encode()))
    assert out["status"] == "rejected" and "strings, numbers or booleans" in out["detail"]
    assert stack.executions() == []


@pytest.mark.parametrize(("body", "reason"), [
    (b'{"hyperparameters": {"epochs": ' + b"9" * 5000 + b"}}",
     "holds a number too long to read (Exceeds the limit (4300 digits)"),  # int()'s limit: a ValueError
    (b"[" * 30_000 + b"]" * 30_000, "nested too deeply to read"),  # under the size limit: a RecursionError
    (b'{"hyperparameters": ' * 2_500 + b"{}" + b"}" * 2_500, "nested too deeply to read"),
])
def test_a_marker_json_cannot_read_is_rejected_not_retried(stack: Stack, body: bytes, reason: str) -> None:
    """Were the trigger to raise, EventBridge would retry it into the DLQ and the upload would never be
    recorded or announced: every marker gets the reject path."""
    out = call(stack, stack.s3_event("data/digits/deep/_READY", body))
    assert out["status"] == "rejected" and reason in out["detail"], out
    assert "data/digits/deep/: the _READY marker" in out["detail"]
    assert "set_int_max_str_digits" not in out["detail"]
    assert stack.executions() == []
    messages = stack.notifications()
    assert len(messages) == 1 and reason in messages[0]
    (run,) = Runs(stack.registry_table).log("digits")
    assert run["status"] == "REJECTED" and reason in run["cause"]


@pytest.mark.parametrize(("hps", "reason"), [
    ({"sagemaker_program": "evil.py"}, "'sagemaker_program' is reserved for SageMaker"),
    ({"sagemaker_submit_directory": "s3://elsewhere/code.tar.gz"}, "'sagemaker_submit_directory' is reserved"),
    ({"_tuning_objective_metric": "loss"}, "'_tuning_objective_metric' is reserved"),
    ({"recipe": "text"}, "'recipe' is set by the pipeline"),
    ({"nope": 1}, "unknown hyperparameter 'nope' for recipe 'digits'"),
    ({"epochs": "many"}, "epochs='many'"),
    ({"batch_size": True}, "batch_size=True: expected int, got a boolean"),
    ({"epochs": 100_000}, "epochs=100000 is out of range [1, 1000]"),
    ({"lr": float("nan")}, "lr=nan is out of range (0, 10]"),  # json.loads accepts NaN
    ({"dropout": 0.99}, "dropout=0.99 is out of range [0, 0.95]"),  # the recipe's own key, its own range
    ({"epochs": 10**400}, "epochs=<an integer of 401 digits> is out of range [1, 1000]"),  # no float holds it
    ({"lr": 10**400}, "lr=<an integer of 401 digits>: the number is too large"),
])
def test_a_marker_with_refused_hyperparameters_starts_nothing_and_is_announced(stack: Stack, hps: dict[str, Any],
                                                                               reason: str) -> None:
    out = call(stack, stack.s3_event("data/digits/ds/_READY", json.dumps({"hyperparameters": hps}).encode()))
    assert out["status"] == "rejected" and reason in out["detail"] and "ds/_READY marker" in out["detail"], out
    assert stack.executions() == []
    messages = stack.notifications()
    assert len(messages) == 1 and reason in messages[0]
    (run,) = Runs(stack.registry_table).log("digits")
    assert run["status"] == "REJECTED" and reason in run["cause"]


def test_marker_hyperparameters_are_typed_and_stack_defaults_are_checked_too(stack: Stack) -> None:
    marker = {"hyperparameters": {"epochs": "3", "lr": 0.01, "augment": "false", "dropout": 0}}
    out = call(stack, stack.s3_event("data/digits/ok/_READY", json.dumps(marker).encode()))
    assert out["status"] == "started", out
    (execution,) = stack.executions()
    hps = json.loads(stack.client("stepfunctions").describe_execution(
        executionArn=execution["executionArn"])["input"])["training"]["hyperparameters"]
    assert (hps["epochs"], hps["lr"], hps["augment"], hps["dropout"]) == ("3", "0.01", "false", "0.0")
    stack.env["TRAINING_HYPERPARAMETERS"] = json.dumps({"sagemaker_region": "us-west-2"})
    out = call(stack, stack.s3_event("data/text/b.csv", b"text,label\nhi,a\n"))
    assert out["status"] == "rejected"
    assert "TRAINING_HYPERPARAMETERS: hyperparameter 'sagemaker_region' is reserved" in out["detail"]
    assert len(stack.executions()) == 1


def test_data_during_a_run_is_coalesced_and_starts_when_the_run_ends(stack: Stack) -> None:
    first = call(stack, stack.s3_event("data/digits/a.csv", CSV))
    second = call(stack, stack.s3_event("data/digits/b.csv", CSV))
    third = call(stack, stack.s3_event("data/digits/c.csv", CSV))
    assert first["status"] == "started"
    assert second["status"] == "queued" and third["status"] == "queued"
    assert len(stack.executions()) == 1  # never two training runs for one recipe
    pending = Runs(stack.registry_table).state("digits").pending
    assert pending is not None and pending["key"] == "data/digits/c.csv"  # the newest waits; b is superseded
    released = call(stack, {"action": "release", "recipe": "digits", "execution": first["execution"],
                            "status": "SUCCEEDED"})
    assert released["status"] == "started" and released["execution"] == third["execution"]
    names = {e["name"] for e in stack.executions()}
    assert names == {first["execution"], third["execution"]}
    state = Runs(stack.registry_table).state("digits")
    assert state.running == third["execution"] and state.pending is None
    # a second release of the same execution is harmless
    again = call(stack, {"action": "release", "recipe": "digits", "execution": first["execution"],
                         "status": "SUCCEEDED"})
    assert again["status"] == "released"


def test_a_stale_lock_does_not_block_new_data(stack: Stack) -> None:
    first = call(stack, stack.s3_event("data/digits/a.csv", CSV))
    (execution,) = stack.executions()
    stack.client("stepfunctions").stop_execution(executionArn=execution["executionArn"])
    second = call(stack, stack.s3_event("data/digits/b.csv", CSV))
    assert first["status"] == "started" and second["status"] == "started"


@pytest.mark.parametrize("name", [
    "eventbridge_ec2_state_change",
    "s3_put",  # a direct S3 notification: the stack routes uploads through EventBridge only
])
def test_events_that_are_not_uploads_are_ignored(stack: Stack, name: str) -> None:
    out = call(stack, load_event(name))
    assert out["status"] == "ignored"
    assert stack.executions() == []


def test_a_release_with_an_unknown_status_is_refused(stack: Stack) -> None:
    with pytest.raises(Exception, match="status"):
        call(stack, {"action": "release", "recipe": "digits", "execution": "x-1", "status": "MAYBE"})


def _lock_without_execution(stack: Stack, since: str | None = None) -> None:
    """What a trigger leaves between taking the lock and StartExecution returning (or after dying there)."""
    runs = Runs(stack.registry_table)
    arn = stack.state_machine_arn.replace(":stateMachine:", ":execution:") + ":digits-starting"
    assert runs.acquire("digits", "digits-starting", arn)
    if since:
        runs.table.update_item(Key={"pk": "recipe#digits", "sk": "state"}, UpdateExpression="SET running_since = :t",
                               ExpressionAttributeValues={":t": since})


def test_an_upload_while_another_start_is_in_flight_waits_instead_of_taking_the_lock(stack: Stack) -> None:
    """The execution of a lock taken a moment ago may not exist yet: that lock is not stale."""
    _lock_without_execution(stack)
    out = call(stack, stack.s3_event("data/digits/b.csv", CSV))
    assert out["status"] == "queued", out
    assert stack.executions() == []  # nothing started beside the start in flight
    assert Runs(stack.registry_table).state("digits").running == "digits-starting"


def test_a_lock_whose_execution_never_started_is_released_after_the_grace_period(stack: Stack) -> None:
    _lock_without_execution(stack, since="2020-01-01T00:00:00+00:00")
    out = call(stack, stack.s3_event("data/digits/b.csv", CSV))
    assert out["status"] == "started", out


def _release(stack: Stack, execution: str) -> dict[str, Any]:
    return call(stack, {"action": "release", "recipe": "digits", "execution": execution, "status": "SUCCEEDED"})


def test_queued_data_survives_a_failed_start_and_starts_on_the_retry(stack: Stack,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from lambdaforge.pipeline.trigger import Trigger

    first = call(stack, stack.s3_event("data/digits/a.csv", CSV))
    queued = call(stack, stack.s3_event("data/digits/b.csv", CSV))
    assert queued["status"] == "queued"

    def refuse(self: Trigger, spec: Any) -> bool:
        raise RuntimeError("Step Functions is unavailable")

    with monkeypatch.context() as patched:
        patched.setattr(Trigger, "_start", refuse)
        with pytest.raises(RuntimeError, match="unavailable"):
            _release(stack, first["execution"])
    state = Runs(stack.registry_table).state("digits")
    assert state.pending is not None and state.pending["key"] == "data/digits/b.csv"  # not lost
    assert state.running is None
    retried = _release(stack, first["execution"])  # Lambda's retry of the same release
    assert retried["status"] == "started" and retried["execution"] == queued["execution"], retried
    assert Runs(stack.registry_table).state("digits").pending is None


def _event_at(stack: Stack, key: str, when: str) -> dict[str, Any]:
    event = stack.s3_event(key, CSV)
    return {**event, "time": when}


def test_older_data_never_replaces_newer_waiting_data(stack: Stack) -> None:
    first = call(stack, stack.s3_event("data/digits/a.csv", CSV))
    newer = call(stack, _event_at(stack, "data/digits/new.csv", "2030-01-01T00:00:10Z"))
    older = call(stack, _event_at(stack, "data/digits/old.csv", "2030-01-01T00:00:05Z"))  # delivered late
    assert newer["status"] == "queued" and older["status"] == "superseded", older
    assert Runs(stack.registry_table).state("digits").pending["key"] == "data/digits/new.csv"  # type: ignore[index]
    released = _release(stack, first["execution"])
    assert released["execution"] == newer["execution"]


def test_a_run_on_newer_data_drops_older_waiting_data(stack: Stack) -> None:
    """Were the older dataset left waiting, it would train (and could promote) after the newer one."""
    first = call(stack, _event_at(stack, "data/digits/a.csv", "2030-01-01T00:00:00Z"))
    call(stack, _event_at(stack, "data/digits/old.csv", "2030-01-01T00:00:05Z"))
    Runs(stack.registry_table).force_release("digits", first["execution"])  # the run was aborted
    fresh = call(stack, _event_at(stack, "data/digits/new.csv", "2030-01-01T00:00:10Z"))
    assert fresh["status"] == "started"
    assert Runs(stack.registry_table).state("digits").pending is None


def test_older_data_delivered_while_newer_data_trains_never_waits_for_a_run(stack: Stack) -> None:
    """It would train after the newer run and replace its model with one trained on older data."""
    newer = call(stack, _event_at(stack, "data/digits/new.csv", "2030-01-01T00:00:10Z"))
    older = call(stack, _event_at(stack, "data/digits/old.csv", "2030-01-01T00:00:05Z"))  # delivered late
    assert newer["status"] == "started" and older["status"] == "superseded", older
    runs = Runs(stack.registry_table)
    assert runs.state("digits").pending is None
    logged = {r["sk"]: r for r in runs.log("digits")}[f"run#{older['execution']}"]
    assert logged["status"] == "SUPERSEDED" and "newer data" in logged["cause"]
    released = _release(stack, newer["execution"])
    assert released["status"] == "released", released  # nothing waits: the older data never trains


def test_older_data_delivered_after_the_newer_run_ended_starts_nothing(stack: Stack) -> None:
    newer = call(stack, _event_at(stack, "data/digits/new.csv", "2030-01-01T00:00:10Z"))
    _release(stack, newer["execution"])
    older = call(stack, _event_at(stack, "data/digits/old.csv", "2030-01-01T00:00:05Z"))
    assert older["status"] == "superseded" and "uploaded 2030-01-01T00:00:10" in older["detail"], older
    executions = stack.client("stepfunctions").list_executions(stateMachineArn=stack.state_machine_arn)
    assert len(executions["executions"]) == 1
    same_second = call(stack, _event_at(stack, "data/digits/also.csv", "2030-01-01T00:00:10Z"))
    assert same_second["status"] == "started"  # one-second resolution: the same second is not older


def test_data_queued_just_as_the_run_ends_starts_instead_of_waiting_for_nothing(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's release looked for waiting data before this upload's set_pending landed: had it been set,
    no lock holder would ever start it."""
    from lambdaforge.pipeline.trigger import Trigger

    first = call(stack, stack.s3_event("data/digits/a.csv", CSV))
    queue = Trigger._queue

    def run_ends_first(self: Trigger, spec: Any, behind: str | None) -> Any:
        _release(stack, first["execution"])  # between this upload's lock check and its queueing
        return queue(self, spec, behind)

    monkeypatch.setattr(Trigger, "_queue", run_ends_first)
    second = call(stack, stack.s3_event("data/digits/b.csv", CSV))
    assert second["status"] == "started", second
    assert Runs(stack.registry_table).state("digits").pending is None
