"""SageMaker training jobs in the local cloud stop the way SageMaker's do, and the workflow survives it.

A job stopped by StopTrainingJob or by its MaxRuntimeInSeconds goes Stopping -> Stopped with the
SecondaryStatus saying why and no FailureReason (AWS gives none). The workflow must then record the
failure, announce it and release the lock, and leave live alone."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lambdaforge.pipeline.training_job import metric_definitions, sagemaker_hyperparameters, upload_source_bundle
from lambdaforge.training.lock import pins
from tests.pipeline.conftest import Pipeline

ROOT = Path(__file__).resolve().parents[2]

TERMINAL = ("Completed", "Failed", "Stopped")


def wait_for(check: Callable[[], Any], timeout: float = 300, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what or check}")


def as_workflow(pipeline: Pipeline, service: str) -> Any:
    """A client acting as the state machine's role, which is what creates and stops jobs in AWS."""
    cloud = pipeline.cloud
    role = cloud.client("stepfunctions").describe_state_machine(
        stateMachineArn=cloud.outputs["StateMachineArn"])["roleArn"]
    return cloud.client_as(cloud.credentials(role, "states.amazonaws.com", "tests"), service)


def start_job(pipeline: Pipeline, *, epochs: int, max_runtime: int = 3600, max_wait: int | None = None,
              instances: int = 1) -> str:
    """A job as the workflow starts one; with `max_wait`, a managed-spot job."""
    cloud, s3 = pipeline.cloud, pipeline.cloud.client("s3")
    name = f"lf-digits-{uuid.uuid4().hex[:16]}"
    prefix = f"data/digits/{name}/"
    s3.upload_file(str(pipeline.data), pipeline.bucket, prefix + "digits.csv")
    artifacts = cloud.outputs["ArtifactsBucketName"]
    source = upload_source_bundle(s3, artifacts)
    as_workflow(pipeline, "sagemaker").create_training_job(
        TrainingJobName=name, RoleArn=cloud.outputs["SageMakerRoleArn"],
        AlgorithmSpecification={"TrainingImage": "local", "TrainingInputMode": "File",
                                "MetricDefinitions": metric_definitions()},
        HyperParameters=sagemaker_hyperparameters("digits", {"epochs": epochs, "checkpoint_every": 5},
                                                  source_uri=source),
        InputDataConfig=[{"ChannelName": "train", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": f"s3://{pipeline.bucket}/{prefix}"}}}],
        OutputDataConfig={"S3OutputPath": f"s3://{artifacts}/training/"},
        ResourceConfig={"InstanceType": "ml.g4dn.xlarge", "InstanceCount": instances, "VolumeSizeInGB": 30},
        StoppingCondition={"MaxRuntimeInSeconds": max_runtime,
                           **({"MaxWaitTimeInSeconds": max_wait} if max_wait else {})},
        EnableManagedSpotTraining=max_wait is not None,
        CheckpointConfig={"S3Uri": f"s3://{artifacts}/checkpoints/{name}/", "LocalPath": "/opt/ml/checkpoints"})
    return name


def describe(pipeline: Pipeline, name: str) -> dict[str, Any]:
    out: dict[str, Any] = pipeline.cloud.client("sagemaker").describe_training_job(TrainingJobName=name)
    return out


def ended(pipeline: Pipeline, name: str, timeout: float = 300) -> dict[str, Any]:
    return dict(wait_for(lambda: (d := describe(pipeline, name))["TrainingJobStatus"] in TERMINAL and d,
                         timeout=timeout, what=f"{name} to end"))


def host_logs(pipeline: Pipeline, name: str) -> dict[str, str]:
    """The job's CloudWatch log, per host stream (SageMaker names them <job>/algo-N-<epoch>)."""
    logs, group = pipeline.cloud.client("logs"), "/aws/sagemaker/TrainingJobs"
    out: dict[str, str] = {}
    for stream in logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=f"{name}/")["logStreams"]:
        host = stream["logStreamName"].split("/", 1)[1].rsplit("-", 1)[0]
        events = logs.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"])["events"]
        out[host] = "\n".join(e["message"] for e in events)
    return out


def model_dir_of(pipeline: Pipeline, name: str, tmp: Path) -> Any:
    from lambdaforge.artifact import safe_extract
    from lambdaforge.artifact.modeldir import open_model_dir

    uri = describe(pipeline, name)["ModelArtifacts"]["S3ModelArtifacts"]
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    pipeline.cloud.client("s3").download_file(bucket, key, str(tmp / "model.tar.gz"))
    safe_extract(tmp / "model.tar.gz", tmp / "model")
    return open_model_dir(tmp / "model")


def test_stop_training_job_goes_stopping_then_stopped_without_a_failure_reason(pipeline: Pipeline) -> None:
    name = start_job(pipeline, epochs=500)
    wait_for(lambda: describe(pipeline, name)["SecondaryStatus"] == "Training", what="the Training phase")
    logs = pipeline.cloud.logs
    assert logs is not None
    wait_for(lambda: any("train_loss" in line for line in logs.recent.get(name, [])), what="training steps")
    as_workflow(pipeline, "sagemaker").stop_training_job(TrainingJobName=name)
    assert describe(pipeline, name)["TrainingJobStatus"] in ("Stopping", "Stopped")
    job = ended(pipeline, name)
    assert (job["TrainingJobStatus"], job["SecondaryStatus"]) == ("Stopped", "Stopped")
    assert "FailureReason" not in job
    assert job["TrainingTimeInSeconds"] >= 1
    # SIGTERM made the harness save a checkpoint, which SageMaker copies to S3 before the job ends
    listed = pipeline.cloud.client("s3").list_objects_v2(Bucket=pipeline.cloud.outputs["ArtifactsBucketName"],
                                                         Prefix=f"checkpoints/{name}/")
    assert any(o["Key"].endswith("latest.json") for o in listed.get("Contents", []))


def test_max_runtime_stops_the_job_with_max_runtime_exceeded(pipeline: Pipeline) -> None:
    name = start_job(pipeline, epochs=500, max_runtime=10)
    job = ended(pipeline, name)
    assert (job["TrainingJobStatus"], job["SecondaryStatus"]) == ("Stopped", "MaxRuntimeExceeded")
    assert "FailureReason" not in job


def test_stopping_a_job_that_ended_is_refused(pipeline: Pipeline) -> None:
    name = start_job(pipeline, epochs=500, max_runtime=5)
    ended(pipeline, name)
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError, match="only InProgress jobs can be stopped") as refused:
        as_workflow(pipeline, "sagemaker").stop_training_job(TrainingJobName=name)
    assert refused.value.response["Error"]["Code"] == "ValidationException"


def test_a_stopped_job_fails_the_run_records_and_announces_it_and_releases_the_lock(live: Pipeline) -> None:
    pipeline = live
    live_before, alias_before = pipeline.catalog().state("digits").live, pipeline.alias_version()
    pipeline.notifications()  # start from an empty inbox
    pipeline.upload_folder(f"stopped-{uuid.uuid4().hex[:8]}", epochs=500)
    sm = pipeline.cloud.client("sagemaker")

    def running_job() -> str | None:
        jobs = sm.list_training_jobs(StatusEquals="InProgress")["TrainingJobSummaries"]
        names = [j["TrainingJobName"] for j in jobs]
        return names[0] if names and describe(pipeline, names[0])["SecondaryStatus"] == "Training" else None

    name = wait_for(running_job, what="the run's training job")
    as_workflow(pipeline, "sagemaker").stop_training_job(TrainingJobName=name)
    run = pipeline.next_run()
    assert run.status == "FAILED", run
    assert "Quantize" not in run.states
    failure = str(pipeline.runs().state("digits").last_failure)
    assert f"training job {name} ended Stopped (Stopped) without a failure reason" in failure, failure
    logged = {r["sk"]: r for r in pipeline.runs().log("digits", limit=20)}
    assert logged[f"run#{run.execution}"]["status"] == "FAILED"
    assert pipeline.runs().state("digits").running is None  # released: the next upload can start a run
    assert any("without a failure reason" in m for m in pipeline.notifications())
    assert (pipeline.catalog().state("digits").live, pipeline.alias_version()) == (live_before, alias_before)


def test_an_aborted_run_stops_its_job_releases_the_lock_and_is_announced(live: Pipeline) -> None:
    """An operator's StopExecution runs no Catch: the status-change event is what cleans up."""
    pipeline = live
    live_before, alias_before = pipeline.catalog().state("digits").live, pipeline.alias_version()
    pipeline.notifications()
    pipeline.upload_folder(f"aborted-{uuid.uuid4().hex[:8]}", epochs=500)
    sm, sfn = pipeline.cloud.client("sagemaker"), pipeline.cloud.client("stepfunctions")

    def running() -> tuple[str, str] | None:
        jobs = sm.list_training_jobs(StatusEquals="InProgress")["TrainingJobSummaries"]
        execs = sfn.list_executions(stateMachineArn=pipeline.cloud.outputs["StateMachineArn"],
                                    statusFilter="RUNNING")["executions"]
        return (jobs[0]["TrainingJobName"], execs[0]["executionArn"]) if jobs and execs else None

    job, execution = wait_for(running, what="the run and its training job")
    pipeline.known.add(execution.rsplit(":", 1)[-1])
    sfn.stop_execution(executionArn=execution, error="Operator", cause="stopped by hand")
    wait_for(lambda: describe(pipeline, job)["TrainingJobStatus"] == "Stopped", what="the job to be stopped")
    wait_for(lambda: pipeline.runs().state("digits").running is None, what="the lock to be released")
    logged = {r["sk"]: r for r in pipeline.runs().log("digits", limit=50)}[f"run#{execution.rsplit(':', 1)[-1]}"]
    assert logged["status"] == "FAILED" and "ABORTED" in logged["cause"]
    assert any("ABORTED" in m for m in pipeline.notifications())
    assert (pipeline.catalog().state("digits").live, pipeline.alias_version()) == (live_before, alias_before)


def test_a_spot_interruption_restarts_the_job_from_its_checkpoints_in_s3(pipeline: Pipeline) -> None:
    name = start_job(pipeline, epochs=30, max_wait=3600)
    trainer, logs = pipeline.cloud.trainer, pipeline.cloud.logs
    assert trainer is not None and logs is not None
    pointer = pipeline.cloud.state_dir / "sagemaker" / name / "algo-1" / "opt" / "ml" / "checkpoints" / "latest.json"
    wait_for(pointer.is_file, what="a complete checkpoint")
    trainer.interrupt(name)
    job = ended(pipeline, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    lines = logs.recent[name]
    assert any("spot capacity reclaimed" in line for line in lines)
    assert any("resuming from checkpoint" in line for line in lines)  # not from scratch
    assert job["BillableTimeInSeconds"] < job["TrainingTimeInSeconds"]  # the wait for capacity is not billed


def test_max_wait_stops_a_spot_job_that_waits_too_long_for_capacity(pipeline: Pipeline) -> None:
    trainer = pipeline.cloud.trainer
    assert trainer is not None
    trainer.spot_restart_seconds = 60.0  # capacity comes back after MaxWait
    try:
        name = start_job(pipeline, epochs=500, max_runtime=20, max_wait=25)
        wait_for(lambda: describe(pipeline, name)["SecondaryStatus"] == "Training", what="the Training phase")
        trainer.interrupt(name)
        job = ended(pipeline, name)
    finally:
        trainer.spot_restart_seconds = 3.0
    assert (job["TrainingJobStatus"], job["SecondaryStatus"]) == ("Stopped", "MaxWaitTimeExceeded")
    assert "FailureReason" not in job


def test_two_instances_train_one_ddp_job_and_only_the_leader_writes_the_model(pipeline: Pipeline,
                                                                              tmp_path: Path) -> None:
    name = start_job(pipeline, epochs=2, instances=2)
    job = ended(pipeline, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    hosts = pipeline.cloud.state_dir / "sagemaker" / name
    for host in ("algo-1", "algo-2"):
        config = json.loads((hosts / host / "opt/ml/input/config/resourceconfig.json").read_text())
        assert config["current_host"] == host and config["hosts"] == ["algo-1", "algo-2"]
    leader_model = hosts / "algo-1" / "opt/ml/model"
    assert (leader_model / "manifest.json").is_file()
    assert not any((hosts / "algo-2" / "opt/ml/model").iterdir())  # the second host wrote nothing
    assert not any((hosts / "algo-2" / "opt/ml/checkpoints").iterdir())
    logs = host_logs(pipeline, name)
    assert set(logs) == {"algo-1", "algo-2"}
    assert "--nnodes=2 --node_rank=1" in logs["algo-2"] and "--nnodes=2 --node_rank=0" in logs["algo-1"]
    model = model_dir_of(pipeline, name, tmp_path)
    assert model.manifest.training.world_size == 2  # one job over both hosts, not two jobs


def test_the_bundle_trains_under_the_sagemaker_training_toolkit(pipeline: Pipeline, tmp_path: Path) -> None:
    """What AWS's PyTorch training image runs: the toolkit's `train` reads sagemaker_program and
    sagemaker_submit_directory, fetches the bundle from S3, pip-installs its hash-locked requirements.txt
    into the container's Python and runs train.py under SAGEMAKER_BASE_DIR."""
    container = ROOT / ".venv-train" / "bin" / "python"
    if not container.exists():
        pytest.fail(f"{container} is missing: `make train-venv` builds the training container's stand-in")
    trainer = pipeline.cloud.trainer
    assert trainer is not None
    trainer.container = container
    try:
        name = start_job(pipeline, epochs=2)
        job = ended(pipeline, name, timeout=1200)  # the first run installs the lock (torch's CUDA libraries too)
    finally:
        trainer.container = None
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    log = host_logs(pipeline, name)["algo-1"]
    assert "Imported framework sagemaker_pytorch_container.training" in log  # the PyTorch image's module
    assert "Installing dependencies from requirements.txt" in log
    assert f"{container} -- train.py --checkpoint_every 5 --epochs 2 --recipe digits" in log, log[-3000:]
    assert "Reporting training SUCCESS" in log
    installed = subprocess.run([str(container), "-c", "import onnxruntime, sklearn, torch; "
                                "print(onnxruntime.__version__, sklearn.__version__, torch.__version__)"],
                               capture_output=True, text=True, check=True).stdout.split()
    locked = pins()
    assert installed[:2] == [locked["onnxruntime"], locked["scikit-learn"]]
    assert installed[2].split("+")[0] == locked["torch"]
    model = model_dir_of(pipeline, name, tmp_path)
    assert model.manifest.metrics["accuracy"] > 0.5


def test_a_job_that_never_ends_is_stopped_when_the_poll_loop_reaches_its_limit(live: Pipeline) -> None:
    """The Wait/Describe loop is bounded (MaxWait + MaxRuntime + a margin): a job that SageMaker keeps
    InProgress beyond that fails the run, which stops the job, records, announces and releases. The
    limit is lowered here to 6 s of polling (on demand, so the job itself runs on)."""
    pipeline = live
    sfn, arn = pipeline.cloud.client("stepfunctions"), pipeline.cloud.outputs["StateMachineArn"]
    deployed = sfn.describe_state_machine(stateMachineArn=arn)["definition"]
    definition = json.loads(deployed)
    prepare = definition["States"]["Prepare"]["Parameters"]
    assert "States.MathAdd" in prepare.pop("poll_limit.$")
    prepare.update({"poll_limit": 6, "use_spot": "false"})
    live_before, alias_before = pipeline.catalog().state("digits").live, pipeline.alias_version()
    pipeline.notifications()
    sfn.update_state_machine(stateMachineArn=arn, definition=json.dumps(definition))
    try:
        pipeline.upload_folder(f"endless-{uuid.uuid4().hex[:8]}", epochs=500)
        run = pipeline.next_run()
    finally:
        sfn.update_state_machine(stateMachineArn=arn, definition=deployed)
    assert run.status == "FAILED" and "PollLimitExceeded" in run.states, run
    failure = str(pipeline.runs().state("digits").last_failure)
    assert "after 6 s of polling" in failure, failure
    job = failure.split("training job ", 1)[1].split(maxsplit=1)[0]
    assert ended(pipeline, job)["TrainingJobStatus"] == "Stopped"  # the failure path stopped it
    assert pipeline.runs().state("digits").running is None
    assert any("after 6 s of polling" in m for m in pipeline.notifications())
    assert (pipeline.catalog().state("digits").live, pipeline.alias_version()) == (live_before, alias_before)


def _container(pipeline: Pipeline) -> Path:
    container = ROOT / ".venv-train" / "bin" / "python"
    if not container.exists():
        pytest.fail(f"{container} is missing: `make train-venv` builds the training container's stand-in")
    return container


def test_in_the_pytorch_image_a_stop_reaches_the_script_only_as_sigkill(pipeline: Pipeline) -> None:
    """The image's PID 1 is bash, which neither handles nor forwards SIGTERM: the harness never gets the
    signal it would checkpoint on, and the job is killed at the end of the grace period. What a stopped
    job resumes from is its periodic checkpoints."""
    trainer = pipeline.cloud.trainer
    assert trainer is not None
    # a grace long enough that a busy machine still looks inside it (5 s once ran out before the look)
    grace = 20.0
    trainer.container, trainer.stop_grace_seconds = _container(pipeline), grace
    try:
        name = start_job(pipeline, epochs=500)
        logs = pipeline.cloud.logs
        assert logs is not None
        wait_for(lambda: any("train_loss" in line for line in logs.recent.get(name, [])), what="training steps")
        asked = time.monotonic()
        as_workflow(pipeline, "sagemaker").stop_training_job(TrainingJobName=name)
        wait_for(lambda: describe(pipeline, name)["TrainingJobStatus"] == "Stopping", what="Stopping")
        time.sleep(2)
        still = describe(pipeline, name)["TrainingJobStatus"]  # no SIGTERM ended it: it trains on
        looked = time.monotonic() - asked
        job = ended(pipeline, name, timeout=120)
        took = time.monotonic() - asked
    finally:
        trainer.container, trainer.stop_grace_seconds = None, 120.0
    assert looked < grace, f"the look came {looked:.1f} s after the stop: too late to see the grace period"
    assert still == "Stopping"
    assert took >= grace  # killed at the end of the grace period, not before
    assert (job["TrainingJobStatus"], job["SecondaryStatus"]) == ("Stopped", "Stopped")
    assert not any("SIGTERM received" in line for line in logs.recent[name])


def _cmdline_and_env(process: Any) -> list[str]:
    import psutil

    try:
        return [*process.cmdline(), *process.environ().values()]
    except psutil.Error:
        return []


def _alive(process: Any) -> bool:
    """Running, and not a zombie: a killed process whose parent died too may wait here for a reaper."""
    import psutil

    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _processes_under(folder: Path) -> list[str]:
    import psutil

    return [" ".join(p.cmdline()) for p in psutil.process_iter() if str(folder) in " ".join(_cmdline_and_env(p))]


def test_a_spot_interruption_of_a_two_host_job_kills_every_worker_and_resumes(pipeline: Pipeline) -> None:
    """torchrun starts its workers in their own sessions: the interruption must reach them too, or they
    would train on (and hold the log pipe open) after their instance was reclaimed."""
    import psutil

    trainer, logs = pipeline.cloud.trainer, pipeline.cloud.logs
    assert trainer is not None and logs is not None
    trainer.spot_restart_seconds = 15.0  # time to look at the reclaimed instances before capacity returns
    try:
        name = start_job(pipeline, epochs=30, max_wait=3600, instances=2)
        hosts = pipeline.cloud.state_dir / "sagemaker" / name
        wait_for((hosts / "algo-1" / "opt/ml/checkpoints/latest.json").is_file, what="a complete checkpoint")
        before = [p for p in psutil.process_iter() if str(hosts) in " ".join(_cmdline_and_env(p))]
        assert len(before) >= 4, before  # per host: the harness, torchrun and its worker
        trainer.interrupt(name)
        wait_for(lambda: describe(pipeline, name)["SecondaryStatus"] == "Interrupted", what="the interruption")
        assert not [p for p in before if _alive(p)]  # nothing of the reclaimed instances runs on
        job = ended(pipeline, name)
    finally:
        trainer.spot_restart_seconds = 3.0
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert any("resuming from checkpoint" in line for line in logs.recent[name])
    assert not _processes_under(hosts)
