"""The pipeline as users meet it, in the embedded cloud: the first upload -> v1 live; another upload
-> a new version live with the old one kept; duplicate events -> one run; bad data -> the run fails,
live untouched, the failure recorded and announced; a failed gate -> nothing promoted; rollback ->
the previous version answers again; requests during a promotion all succeed.

Each test runs alone (`pytest tests/pipeline -k <name>`): what it needs comes from fixtures
(tests/pipeline/conftest.py), and its numbers are relative to the state it finds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from lambdaforge.local.audit import audit, report
from tests.conftest import load_event
from tests.pipeline.conftest import (
    EPOCHS,
    ONE,
    BadDataRun,
    FirstPromotion,
    Pipeline,
    model_version,
    succeeded,
)

ROOT = Path(__file__).resolve().parents[2]


def test_the_first_upload_makes_version_1_live_and_answering(pipeline: Pipeline,
                                                             first_promotion: FirstPromotion) -> None:
    first = first_promotion
    assert first.status_before == 503  # nothing promoted yet: a clear 503, not a crash
    succeeded(pipeline, first.run)
    assert {"CreateTrainingJob", "DescribeTrainingJob", "Quantize", "PromoteCanary", "PromoteFinalize",
            "Release"} <= set(first.run.states)
    assert first.answer.status_code == 200 and first.answer.json()["predictions"][0]["label"] == "1"
    assert first.answer.json()["model"]["version"] == "digits-v1"
    assert (first.state.live, first.run_state.running) == (1, None)
    print(f"digits pipeline, upload to answering: {first.seconds:.1f} s")


def test_another_upload_under_traffic_makes_a_new_version_live_and_keeps_the_old_one(live: Pipeline) -> None:
    pipeline = live
    before = pipeline.catalog().state("digits")
    assert before.live is not None
    new = pipeline.next_version()
    old_lambda = pipeline.alias_version()
    failures: list[str] = []
    answered = [0]
    stop = threading.Event()

    def traffic() -> None:  # requests keep arriving during the canary and the switch
        session = requests.Session()
        while not stop.is_set():
            try:
                r = session.post(f"{pipeline.gateway.url}/predict", json={"instances": [ONE]}, timeout=60)
                if r.status_code != 200:
                    failures.append(f"{r.status_code} {r.text[:200]}")
                answered[0] += 1
            except requests.RequestException as exc:
                failures.append(repr(exc))
            time.sleep(0.05)

    thread = threading.Thread(target=traffic)
    thread.start()
    try:
        pipeline.upload_folder("second", epochs=EPOCHS)  # as good as live: the gate compares with it
        run = pipeline.next_run()
    finally:
        stop.set()
        thread.join()
    succeeded(pipeline, run)
    assert failures == [] and answered[0] > 20, failures[:5]
    assert model_version(pipeline) == f"digits-v{new}"
    state = pipeline.catalog().state("digits")
    assert (state.live, state.previous) == (new, before.live)
    old = pipeline.catalog().version("digits", before.live)
    assert old.lambda_version == old_lambda and old.status == "previous"


def test_duplicate_events_start_one_run(live: Pipeline) -> None:
    pipeline = live
    new = pipeline.next_version()
    executions_before = len(pipeline.executions())
    s3 = pipeline.cloud.client("s3")
    s3.upload_file(str(pipeline.data), pipeline.bucket, "data/digits/dup/digits.csv")
    time.sleep(1)
    assert len(pipeline.executions()) == executions_before  # the file alone starts nothing
    body = json.dumps({"hyperparameters": {"epochs": EPOCHS}}).encode()
    marker = s3.put_object(Bucket=pipeline.bucket, Key="data/digits/dup/_READY", Body=body)
    first = pipeline.next_run()
    # EventBridge delivers the same object-created event again (at-least-once delivery)
    event = load_event("eventbridge_s3_object_created", {
        "id": "duplicate-delivery", "resources": [f"arn:aws:s3:::{pipeline.bucket}"],
        "detail.bucket.name": pipeline.bucket, "detail.object.key": "data/digits/dup/_READY",
        "detail.object.size": len(body), "detail.object.etag": marker["ETag"].strip('"'),
        "detail.object.version-id": marker["VersionId"]})
    lam = pipeline.cloud.client("lambda")
    trigger = pipeline.cloud.physical["TriggerFunction"]
    answers = [json.loads(lam.invoke(FunctionName=trigger, Payload=json.dumps(event).encode())["Payload"].read())
               for _ in range(2)]
    assert all(a["execution"] == first.execution for a in answers), answers
    executions = pipeline.executions()
    assert sum(e["name"] == first.execution for e in executions) == 1
    assert len(executions) == executions_before + 1
    succeeded(pipeline, first)
    assert pipeline.catalog().state("digits").live == new


def test_bad_data_fails_the_run_and_leaves_live_alone(bad_data_run: BadDataRun) -> None:
    bad = bad_data_run
    assert bad.run.status == "FAILED"
    assert bad.run.error is not None and "TrainingJobFailed" in bad.run.error and "missing column" in bad.run.error
    assert bad.alias_after == bad.alias_before
    state, run_state = bad.state_after, bad.run_state_after
    assert state.live == bad.live_before and run_state.running is None
    assert run_state.last_failure is not None and run_state.last_failure["error"] == "TrainingJobFailed"
    assert bad.run_status == "FAILED"
    assert len(bad.messages) == 1 and bad.run.execution in bad.messages[0] and "did not change" in bad.messages[0]
    assert bad.answer_after.status_code == 200, bad.answer_after.text
    assert bad.answer_after.json()["model"]["version"] == f"digits-v{bad.live_before}"


def test_a_failed_gate_promotes_nothing(live: Pipeline) -> None:
    pipeline = live
    lam = pipeline.cloud.client("lambda")
    quantize = pipeline.cloud.physical["QuantizeFunction"]
    env = lam.get_function_configuration(FunctionName=quantize)["Environment"]["Variables"]
    lam.update_function_configuration(FunctionName=quantize,  # an operator raises the bar
                                      Environment={"Variables": {**env, "MIN_ACCURACY": "0.999"}})
    try:
        live_before, alias_before = pipeline.catalog().state("digits").live, pipeline.alias_version()
        versions_before = len(pipeline.catalog().versions("digits"))
        pipeline.notifications()
        pipeline.upload_folder("weak", epochs=1)
        run = pipeline.next_run()
        assert run.status == "FAILED" and run.error is not None and "AccuracyGateFailed" in run.error
        assert "PromoteCanary" not in run.states
        assert pipeline.alias_version() == alias_before
        assert pipeline.catalog().state("digits").live == live_before
        assert len(pipeline.catalog().versions("digits")) == versions_before
        assert len(pipeline.notifications()) == 1
    finally:
        lam.update_function_configuration(FunctionName=quantize, Environment={"Variables": env})


def test_rollback_returns_to_the_previous_version(live: Pipeline, promoted_again: int) -> None:
    pipeline = live
    state = pipeline.catalog().state("digits")
    live_version, previous = state.live, state.previous
    assert live_version is not None and previous is not None
    out = pipeline.cloud.client("lambda").invoke(FunctionName=pipeline.cloud.physical["PromoteFunction"],
                                                 Payload=json.dumps({"action": "rollback", "recipe": "digits"}))
    assert "FunctionError" not in out
    answer = json.loads(out["Payload"].read())
    assert (answer["from_version"], answer["to_version"]) == (live_version, previous)
    assert model_version(pipeline) == f"digits-v{previous}"
    assert pipeline.alias_version() == pipeline.catalog().version("digits", previous).lambda_version


def test_the_cli_works_against_the_local_cloud(live: Pipeline, bad_data_run: BadDataRun, promoted_again: int) -> None:
    pipeline = live
    env = {**os.environ, "LAMBDAFORGE_HOME": str(pipeline.cloud.state_dir)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "lambdaforge.cli", *args], env=env, capture_output=True,
                              text=True, timeout=300, check=False)

    versions = len(pipeline.catalog().versions("digits"))
    status = cli("status", "--local", "--json")
    assert status.returncode == 0, status.stderr
    state = json.loads(status.stdout)
    assert state["live"] == pipeline.catalog().state("digits").live
    assert state["alias"]["version"] == pipeline.alias_version()
    assert len(state["versions"]) == versions >= 2  # the first promotion and `promoted_again`
    assert any(r["status"] == "FAILED" for r in state["runs"])  # `bad_data_run`

    logs = cli("logs", "trigger", "--local", "--since", "1h")
    assert logs.returncode == 0, logs.stderr
    assert "upload handled" in logs.stdout

    training = cli("logs", "training", "--local")
    assert training.returncode == 0 and "[lambdaforge]" in training.stdout

    before = pipeline.catalog().state("digits")
    back = cli("rollback", "--local", "--yes")
    assert back.returncode == 0, back.stdout + back.stderr
    after = pipeline.catalog().state("digits")
    assert after.live == before.previous

    uploaded = cli("upload", str(pipeline.data), "--local", "--name", "from-cli.csv")
    assert uploaded.returncode == 0 and "data/digits/from-cli.csv" in uploaded.stdout
    run = pipeline.next_run()
    succeeded(pipeline, run)


def test_the_permission_audit(live: Pipeline, bad_data_run: BadDataRun, promoted_again: int,
                              tmp_path: Path) -> None:
    """Under IAM enforcement every call each role made was allowed (else the flows above failed), and
    every action the template grants was used by some call or is listed with its reason in
    infra/iam-audit.yaml. The flows: a promotion, a failed run (`bad_data_run`), a second promotion
    with a canary (`promoted_again`), and below, a rollback and a rejected upload."""
    out = live.cloud.client("lambda").invoke(FunctionName=live.cloud.physical["PromoteFunction"],
                                             Payload=json.dumps({"action": "rollback", "recipe": "digits"}))
    assert "FunctionError" not in out, out["Payload"].read()
    live.notifications()
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    live.upload(empty, "empty.csv")  # a rejected upload: the trigger records and announces it
    deadline = time.time() + 120
    while not any("empty.csv" in m for m in live.notifications()):
        assert time.time() < deadline, "the rejected upload was not announced"
    audits = audit(live.cloud.translated.cfn, list(live.cloud.iam.calls), live.cloud.physical,
                   ROOT / "infra" / "iam-audit.yaml")
    text = report(audits)
    (tmp_path / "iam-audit.md").write_text(text)
    if os.environ.get("LAMBDAFORGE_IAM_AUDIT_REPORT"):
        Path(os.environ["LAMBDAFORGE_IAM_AUDIT_REPORT"]).write_text(text)
    assert {a.role for a in audits} >= {"TriggerFunctionRole", "QuantizeFunctionRole", "PromoteFunctionRole",
                                        "InferenceFunctionRole", "RetrainStateMachineRole",
                                        "SageMakerExecutionRole"}
    assert all(a.used for a in audits if a.role != "CodeDeployServiceRole"), text  # every role acted
    assert [a.role for a in audits if not a.clean] == [], text
