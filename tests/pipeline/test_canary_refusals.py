"""A candidate that answers 503 is never promoted: the smoke check refuses it before any traffic moves.

The candidate is a real model directory whose checksums verify, but whose graph onnxruntime refuses
(an IR version newer than the runtime knows: what an export with a newer `onnx` than the serving
image's onnxruntime produces). The inference function starts, the model does not load, and every
request answers 503. It enters the real workflow at its promote step: a state machine made of the
deployed definition's states from PromoteCanary on (canary, wait, finalize, and the Catch path that
aborts, records, announces and releases), run by the workflow's own role under IAM enforcement.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lambdaforge.registry import VersionRecord
from tests.pipeline.conftest import Pipeline, dump_logs, model_version

TAIL_START = "PromoteCanary"


def _next_states(state: dict[str, Any]) -> list[str]:
    out = [state.get("Next"), state.get("Default")]
    out += [c.get("Next") for c in state.get("Choices", [])]
    out += [c.get("Next") for c in state.get("Catch", [])]
    return [s for s in out if s]


def workflow_from(definition: dict[str, Any], start: str) -> dict[str, Any]:
    """The deployed workflow entered at `start`: the states reachable from it, unchanged."""
    keep: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name not in keep:
            keep.add(name)
            todo.extend(_next_states(definition["States"][name]))
    return {**definition, "StartAt": start, "States": {k: v for k, v in definition["States"].items() if k in keep}}


def copy_of(pipeline: Pipeline, model_uri: str, target: Path) -> Path:
    s3 = pipeline.cloud.client("s3")
    bucket, _, prefix = model_uri[5:].partition("/")
    for obj in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]:
        path = target / obj["Key"][len(prefix):]
        path.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, obj["Key"], str(path))
    return target


def broken_copy(pipeline: Pipeline, model_uri: str, target: Path) -> Path:
    """The live model's directory with a graph onnxruntime refuses to load, its manifest re-checksummed."""
    import onnx

    from lambdaforge.artifact.modeldir import read_manifest, write_manifest

    copy_of(pipeline, model_uri, target)
    manifest = read_manifest(target)
    graph = onnx.load(str(target / manifest.model_file))
    graph.ir_version = 99  # newer than any onnxruntime knows
    onnx.save(graph, str(target / manifest.model_file))
    write_manifest(target, manifest)
    return target


@dataclass(frozen=True)
class Rollout:
    """A candidate's run from the promote step on, as observed."""

    version: int
    execution: str
    status: str
    error: str
    cause: str
    lambda_version: str | None
    alias_before: str
    alias_after: str
    weights_seen: list[dict[str, float]]
    served_before: str
    served_after: str
    run_record: dict[str, Any]
    last_failure: dict[str, Any] | None
    messages: list[str]
    server_errors: float  # the candidate version's own ServerErrors (from its EMF lines)
    live_after: int | None
    live_before: int | None


def run_from_promote(live: Pipeline, model: Path, name: str) -> Rollout:
    """Register `model` as a new candidate made by a run, and run the workflow from its promote step."""
    cloud = live.cloud
    catalog, runs = live.catalog(), live.runs()
    live_before = catalog.state("digits").live
    assert live_before is not None
    alias_before, served_before = live.alias_version(), model_version(live)

    version = catalog.allocate_version("digits")
    prefix = f"models/digits/v{version:06d}/"
    bucket = cloud.outputs["ArtifactsBucketName"]
    for path in sorted(p for p in model.rglob("*") if p.is_file()):
        cloud.client("s3").upload_file(str(path), bucket, prefix + path.relative_to(model).as_posix())
    execution = f"digits-{name}-{uuid.uuid4().hex[:12]}"
    catalog.put_version(VersionRecord(recipe="digits", version=version, model_uri=f"s3://{bucket}/{prefix}",
                                      execution=execution, training_job=f"lf-digits-{name}"))

    sfn = cloud.client("stepfunctions")
    deployed = sfn.describe_state_machine(stateMachineArn=cloud.outputs["StateMachineArn"])
    tail = sfn.create_state_machine(name=f"retrain-from-promote-{uuid.uuid4().hex[:6]}",
                                    definition=json.dumps(workflow_from(json.loads(deployed["definition"]),
                                                                        TAIL_START)),
                                    roleArn=deployed["roleArn"])["stateMachineArn"]
    arn = tail.replace(":stateMachine:", ":execution:") + f":{execution}"
    assert runs.acquire("digits", execution, arn) == "taken"  # as the trigger does before a run starts
    live.notifications()  # start from an empty inbox

    weights: list[dict[str, float]] = []
    done = threading.Event()
    lam = cloud.client("lambda")

    def watch() -> None:
        while not done.is_set():
            out = lam.get_alias(FunctionName=cloud.outputs["InferenceFunctionName"], Name="live")
            weights.append(dict((out.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = datetime.now(UTC)
    sfn.start_execution(stateMachineArn=tail, name=execution, input=json.dumps({
        "recipe": "digits", "training": {"job_name": f"lf-digits-{name}"},
        "config": {"canary_seconds": 3, "metrics_settle_seconds": 0},  # the local stack's CanarySeconds, and no lag
        "quantize": {"result": {"gate_passed": True, "gate_reason": "", "version": version}}}))
    deadline = time.time() + 180
    described = sfn.describe_execution(executionArn=arn)
    while described["status"] == "RUNNING" and time.time() < deadline:
        time.sleep(0.5)
        described = sfn.describe_execution(executionArn=arn)
    done.set()
    watcher.join(timeout=5)
    assert described["status"] != "RUNNING", f"the run did not end\n{dump_logs(cloud)}"

    record = catalog.version("digits", version)
    cw = cloud.client("cloudwatch")
    datapoints = cw.get_metric_statistics(
        Namespace="lambdaforge", MetricName="ServerErrors", StartTime=started - timedelta(minutes=1),
        EndTime=datetime.now(UTC) + timedelta(minutes=1), Period=60, Statistics=["Sum"],
        Dimensions=[{"Name": "service", "Value": "inference"},
                    {"Name": "FunctionVersion", "Value": str(record.lambda_version)}])["Datapoints"]
    history = sfn.get_execution_history(executionArn=arn, reverseOrder=True)["events"]
    failed = next((e["executionFailedEventDetails"] for e in history if "executionFailedEventDetails" in e), {})
    return Rollout(
        version=version, execution=execution, status=described["status"], error=failed.get("error", ""),
        cause=failed.get("cause", ""), lambda_version=record.lambda_version, alias_before=alias_before,
        alias_after=live.alias_version(), weights_seen=weights, served_before=served_before,
        served_after=model_version(live), run_record=runs.run("digits", execution),
        last_failure=runs.state("digits").last_failure, messages=live.notifications(),
        server_errors=sum(p["Sum"] for p in datapoints), live_before=live_before,
        live_after=catalog.state("digits").live)


@pytest.fixture(scope="module")
def refused(live: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Rollout:
    current = live.catalog().live_model("digits")
    assert current is not None
    return run_from_promote(live, broken_copy(live, current.model_uri, tmp_path_factory.mktemp("broken") / "m"),
                            "refusal")


def test_a_model_that_answers_503_is_never_promoted(refused: Rollout) -> None:
    assert refused.status == "FAILED"
    assert refused.lambda_version is not None  # it was published, pinned to its model, and asked
    assert refused.weights_seen, "the alias was never observed"
    assert all(refused.lambda_version not in w for w in refused.weights_seen)  # no request was ever routed to it
    assert refused.alias_after == refused.alias_before
    assert refused.live_after == refused.live_before


def test_the_refusal_is_recorded_and_announced(refused: Rollout) -> None:
    assert refused.run_record.get("status") == "FAILED"
    assert refused.run_record.get("error") == "SmokeCheckFailedError"
    assert "answered 503" in str(refused.run_record.get("cause")), refused.run_record
    assert refused.last_failure and refused.last_failure["execution"] == refused.execution
    assert any(refused.execution in m and "SmokeCheckFailedError" in m and "answered 503" in m
               for m in refused.messages), refused.messages


def test_live_keeps_answering_with_the_same_version(refused: Rollout) -> None:
    assert refused.served_after == refused.served_before


def test_the_candidates_503_reached_its_own_metrics(refused: Rollout) -> None:
    """The local executor turned the version's EMF line into CloudWatch metrics, as AWS does."""
    assert refused.server_errors >= 1


def test_a_healthy_candidate_passes_the_smoke_check_and_its_canary(live: Pipeline,
                                                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    """The same path with the live model's own files: smoke, per-version alarms, the window, finalize,
    all under the promote function's role; the version's answers reach its metrics and its alarms go."""
    current = live.catalog().live_model("digits")
    assert current is not None
    done = run_from_promote(live, copy_of(live, current.model_uri, tmp_path_factory.mktemp("healthy") / "m"),
                            "healthy")
    assert done.status == "SUCCEEDED", f"{done.error}: {done.cause}\n{dump_logs(live.cloud)}"
    assert done.live_after == done.version and done.alias_after == done.lambda_version
    assert any(done.lambda_version in w for w in done.weights_seen)  # it had its canary weight
    assert done.served_after == f"digits-v{done.version}" and done.server_errors == 0
    alarms = live.cloud.client("cloudwatch").describe_alarms()["MetricAlarms"]
    assert not [a for a in alarms if f"-canary-v{done.lambda_version}-" in a["AlarmName"]]
    history = live.cloud.client("cloudwatch").describe_alarm_history(HistoryItemType="StateUpdate")
    assert not [i for i in history["AlarmHistoryItems"]
                if f"-canary-v{done.lambda_version}-" in i["AlarmName"] and i["HistorySummary"].endswith("to ALARM")]
