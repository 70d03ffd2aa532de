"""The pipeline as users meet it, in the embedded cloud, one step after another:
first upload -> v1 live; second upload -> v2 live with v1 kept; duplicate events -> one run;
bad data -> the run fails, v1/v2 untouched, the failure recorded and announced; a failed gate ->
nothing promoted; rollback -> the previous version answers again; requests during a promotion
all succeed."""

from __future__ import annotations

import json
import threading
import time

import requests

from lambdaforge.local.up import RunResult
from tests.pipeline.conftest import Pipeline, dump_logs

ONE = [0, 0, 0, 2, 16, 16, 2, 0, 0, 0, 0, 4, 16, 16, 2, 0, 0, 1, 4, 12, 16, 12, 0, 0, 0, 7, 16, 16, 16, 12, 0, 0,
       0, 0, 3, 10, 16, 14, 0, 0, 0, 0, 0, 8, 16, 12, 0, 0, 0, 0, 0, 6, 16, 16, 2, 0, 0, 0, 0, 2, 12, 15, 4, 0]


def succeeded(pipeline: Pipeline, run: RunResult) -> None:
    assert run.status == "SUCCEEDED", f"{run.execution}: {run.error}\n{dump_logs(pipeline.cloud)}"


def model_version(pipeline: Pipeline) -> str:
    r = pipeline.predict([ONE])
    assert r.status_code == 200, r.text
    return str(r.json()["model"]["version"])


def test_1_first_upload_makes_version_1_live_and_answering(pipeline: Pipeline) -> None:
    assert pipeline.predict([ONE]).status_code == 503  # nothing promoted yet: a clear 503, not a crash
    started = time.time()
    pipeline.upload(pipeline.data, "first.csv")
    run = pipeline.next_run()
    succeeded(pipeline, run)
    assert {"CreateTrainingJob", "DescribeTrainingJob", "Quantize", "PromoteCanary", "PromoteFinalize",
            "Release"} <= set(run.states)
    r = pipeline.predict([ONE])
    assert r.status_code == 200 and r.json()["predictions"][0]["label"] == "1"
    assert r.json()["model"]["version"] == "digits-v1"
    state, run_state = pipeline.catalog().state("digits"), pipeline.runs().state("digits")
    assert (state.live, run_state.running) == (1, None)
    print(f"digits pipeline, upload to answering: {time.time() - started:.1f} s")


def test_2_second_upload_makes_version_2_live_and_keeps_version_1(pipeline: Pipeline) -> None:
    v1_lambda = pipeline.alias_version()
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
        pipeline.upload_folder("second", epochs=12)
        run = pipeline.next_run()
    finally:
        stop.set()
        thread.join()
    succeeded(pipeline, run)
    assert failures == [] and answered[0] > 20, failures[:5]
    assert model_version(pipeline) == "digits-v2"
    state = pipeline.catalog().state("digits")
    assert (state.live, state.previous) == (2, 1)
    v1 = pipeline.catalog().version("digits", 1)
    assert v1.lambda_version == v1_lambda and v1.status == "previous"


def test_3_duplicate_events_start_one_run(pipeline: Pipeline) -> None:
    s3 = pipeline.cloud.client("s3")
    s3.upload_file(str(pipeline.data), pipeline.bucket, "data/digits/dup/digits.csv")
    time.sleep(1)
    assert pipeline.cloud.client("stepfunctions").list_executions(  # the file alone starts nothing
        stateMachineArn=pipeline.cloud.outputs["StateMachineArn"])["executions"].__len__() == len(pipeline.known)
    marker = s3.put_object(Bucket=pipeline.bucket, Key="data/digits/dup/_READY",
                           Body=json.dumps({"hyperparameters": {"epochs": 4}}).encode())
    first = pipeline.next_run()
    # EventBridge delivers the same object-created event again (at-least-once delivery)
    event = {"version": "0", "id": "duplicate-delivery", "detail-type": "Object Created", "source": "aws.s3",
             "account": "123456789012", "time": "2026-11-22T10:00:00Z", "region": "us-east-1",
             "resources": [f"arn:aws:s3:::{pipeline.bucket}"],
             "detail": {"version": "0", "bucket": {"name": pipeline.bucket},
                        "object": {"key": "data/digits/dup/_READY", "size": 28, "etag": marker["ETag"].strip('"'),
                                   "version-id": marker["VersionId"], "sequencer": "0"},
                        "request-id": "x", "requester": "123456789012", "reason": "PutObject"}}
    lam = pipeline.cloud.client("lambda")
    trigger = pipeline.cloud.physical["TriggerFunction"]
    answers = [json.loads(lam.invoke(FunctionName=trigger, Payload=json.dumps(event).encode())["Payload"].read())
               for _ in range(2)]
    assert all(a["execution"] == first.execution for a in answers), answers
    executions = pipeline.cloud.client("stepfunctions").list_executions(
        stateMachineArn=pipeline.cloud.outputs["StateMachineArn"])["executions"]
    assert sum(e["name"] == first.execution for e in executions) == 1
    assert len(executions) == len(pipeline.known)
    succeeded(pipeline, first)
    assert pipeline.catalog().state("digits").live == 3


def test_4_bad_data_fails_the_run_and_leaves_live_alone(pipeline: Pipeline) -> None:
    live_before, alias_before = pipeline.catalog().state("digits").live, pipeline.alias_version()
    pipeline.notifications()  # start from an empty inbox
    bad = pipeline.data.parent / "bad.csv"
    bad.write_text("label,p0\n3,1\n")  # 63 pixel columns missing
    pipeline.upload(bad, "bad.csv")
    run = pipeline.next_run()
    assert run.status == "FAILED"
    assert run.error is not None and "TrainingJobFailed" in run.error and "missing column" in run.error
    assert pipeline.alias_version() == alias_before
    state, run_state = pipeline.catalog().state("digits"), pipeline.runs().state("digits")
    assert state.live == live_before and run_state.running is None
    assert run_state.last_failure is not None and run_state.last_failure["error"] == "TrainingJobFailed"
    runs = {r["sk"]: r for r in pipeline.runs().log("digits", limit=20)}
    assert runs[f"run#{run.execution}"]["status"] == "FAILED"
    messages = pipeline.notifications()
    assert len(messages) == 1 and run.execution in messages[0] and "did not change" in messages[0]
    assert model_version(pipeline) == f"digits-v{live_before}"


def test_5_a_failed_gate_promotes_nothing(pipeline: Pipeline) -> None:
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


def test_6_rollback_returns_to_the_previous_version(pipeline: Pipeline) -> None:
    state = pipeline.catalog().state("digits")
    live, previous = state.live, state.previous
    assert live is not None and previous is not None
    out = pipeline.cloud.client("lambda").invoke(FunctionName=pipeline.cloud.physical["PromoteFunction"],
                                                 Payload=json.dumps({"action": "rollback", "recipe": "digits"}))
    assert "FunctionError" not in out
    answer = json.loads(out["Payload"].read())
    assert (answer["from_version"], answer["to_version"]) == (live, previous)
    assert model_version(pipeline) == f"digits-v{previous}"
    assert pipeline.alias_version() == pipeline.catalog().version("digits", previous).lambda_version


def test_7_the_cli_works_against_the_local_cloud(pipeline: Pipeline) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "LAMBDAFORGE_HOME": str(pipeline.cloud.state_dir)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "lambdaforge.cli", *args], env=env, capture_output=True,
                              text=True, timeout=300, check=False)

    status = cli("status", "--local", "--json")
    assert status.returncode == 0, status.stderr
    state = json.loads(status.stdout)
    assert state["live"] == pipeline.catalog().state("digits").live
    assert state["alias"]["version"] == pipeline.alias_version()
    assert len(state["versions"]) >= 3 and any(r["status"] == "FAILED" for r in state["runs"])

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
