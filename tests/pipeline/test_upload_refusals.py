"""What uploaders send is untrusted: a `_READY` marker that asks for a reserved hyperparameter is refused
at the trigger (no run, no training job, recorded and announced, live untouched), and a training job's
role cannot replace the code that later jobs run.

Each test runs alone; the live model comes from tests/pipeline/conftest.py (`live`)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lambdaforge.pipeline.training_job import upload_source_bundle
from tests.pipeline.conftest import Pipeline, dump_logs, model_version


@dataclass(frozen=True)
class RefusedMarker:
    """A folder dataset whose marker carries `sagemaker_program`, as observed."""

    folder: str
    record: dict[str, Any]  # the registry's run log entry for the upload
    messages: list[str]  # failure notifications sent meanwhile (the inbox was emptied first)
    executions: tuple[int, int]  # workflow executions before, after
    jobs: tuple[set[str], set[str]]  # training jobs before, after
    alias: tuple[str, str]  # alias live's function version before, after
    version: tuple[str, str]  # the model /predict answers with, before, after


def _jobs(pipeline: Pipeline) -> set[str]:
    out = pipeline.cloud.client("sagemaker").list_training_jobs(MaxResults=100)["TrainingJobSummaries"]
    return {j["TrainingJobName"] for j in out}


@pytest.fixture(scope="module")
def refused_marker(live: Pipeline) -> RefusedMarker:
    version, alias, jobs, executions = model_version(live), live.alias_version(), _jobs(live), len(live.executions())
    live.notifications()  # start from an empty inbox
    folder = live.upload_folder(f"refused-{uuid.uuid4().hex[:8]}", sagemaker_program="evil.py", epochs=3)
    deadline, record = time.time() + 120, None
    while record is None:
        assert time.time() < deadline, f"the upload was not recorded\n{dump_logs(live.cloud)}"
        record = next((r for r in live.runs().log("digits", limit=500)
                       if r.get("key") == folder + "_READY"), None)
        time.sleep(0.5)
    messages = live.notifications()
    return RefusedMarker(folder=folder, record=record, messages=messages,
                         executions=(executions, len(live.executions())), jobs=(jobs, _jobs(live)),
                         alias=(alias, live.alias_version()), version=(version, model_version(live)))


def test_a_marker_with_a_reserved_hyperparameter_starts_no_run_and_leaves_live_alone(
        refused_marker: RefusedMarker) -> None:
    refused = refused_marker
    assert refused.record["status"] == "REJECTED"
    assert "hyperparameter 'sagemaker_program' is reserved" in refused.record["cause"]
    assert refused.executions[1] == refused.executions[0] and refused.jobs[1] == refused.jobs[0]
    assert len(refused.messages) == 1, refused.messages
    assert "sagemaker_program" in refused.messages[0] and refused.folder in refused.messages[0]
    assert refused.alias[1] == refused.alias[0] and refused.version[1] == refused.version[0]


@pytest.fixture
def as_training_job(pipeline: Pipeline) -> Iterator[Any]:
    """An S3 client with the credentials SageMaker hands a job (the SageMaker execution role).

    The denials it provokes on purpose are taken out of the permission audit's record afterwards:
    there, any denied call is a flow that failed."""
    cloud = pipeline.cloud
    creds = cloud.credentials(cloud.outputs["SageMakerRoleArn"], "sagemaker.amazonaws.com", "upload-refusals")
    before = {id(c) for c in cloud.iam.calls}
    yield cloud.client_as(creds, "s3")
    cloud.iam.calls[:] = [c for c in cloud.iam.calls if c.allowed or id(c) in before]


def test_a_training_job_cannot_replace_the_training_code_but_writes_its_outputs(pipeline: Pipeline,
                                                                               as_training_job: Any) -> None:
    s3, bucket = as_training_job, pipeline.cloud.outputs["ArtifactsBucketName"]
    source = upload_source_bundle(pipeline.cloud.client("s3"), bucket)  # what every run's job executes
    key = source.split(f"s3://{bucket}/", 1)[1]
    original = s3.get_object(Bucket=bucket, Key=key)["Body"].read()  # the job reads its code
    for attempt in (lambda: s3.put_object(Bucket=bucket, Key=key, Body=b"import os; os.system('evil')"),
                    lambda: s3.put_object(Bucket=bucket, Key="source/other/sourcedir.tar.gz", Body=b"x"),
                    lambda: s3.delete_object(Bucket=bucket, Key=key)):
        with pytest.raises(ClientError) as denied:
            attempt()
        assert denied.value.response["Error"]["Code"] == "AccessDenied"
    assert pipeline.cloud.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read() == original
    probe = f"lf-digits-probe-{uuid.uuid4().hex[:8]}"
    for out_key in (f"training/{probe}/output/model.tar.gz", f"checkpoints/{probe}/checkpoint.pt"):
        s3.put_object(Bucket=bucket, Key=out_key, Body=b"ok")
        assert pipeline.cloud.client("s3").get_object(Bucket=bucket, Key=out_key)["Body"].read() == b"ok"
    assert s3.get_object(Bucket=bucket, Key=f"checkpoints/{probe}/checkpoint.pt")["Body"].read() == b"ok"  # resume
