"""`lambdaforge train --cloud`: a one-off SageMaker training job through the SageMaker Python SDK v3.

The job runs the same entry point with the same hyperparameters, metric definitions and
checkpoint layout as the retraining workflow. The SDK is imported here only: it is heavy and
some of its modules need a region at import time.
"""

from __future__ import annotations

import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

from lambdaforge.cloud.errors import CloudError
from lambdaforge.pipeline.training_job import metric_definitions, source_bundle


@dataclass(frozen=True)
class CloudTrainingSpec:
    recipe: str
    data_uri: str  # s3:// prefix or object
    role_arn: str
    bucket: str  # for outputs and checkpoints
    region: str
    training_image: str
    instance_type: str = "ml.g5.xlarge"
    instance_count: int = 1
    spot: bool = True
    max_runtime_s: int = 3600
    max_wait_s: int = 7200
    hyperparameters: dict[str, Any] | None = None
    dataset_version: str = ""

    def validate(self) -> None:
        if not self.data_uri.startswith("s3://"):
            raise CloudError(f"--data must be an s3:// URI for a cloud job (got {self.data_uri!r})")
        if not self.role_arn.startswith("arn:"):
            raise CloudError("a SageMaker execution role ARN is needed",
                             hint="pass --role, set LAMBDAFORGE_SAGEMAKER_ROLE, or deploy the stack (it has one)")
        if self.instance_count < 1:
            raise CloudError("--instance-count must be at least 1")
        if self.spot and self.max_wait_s < self.max_runtime_s:
            raise CloudError("with --spot, the maximum wait must be at least the maximum runtime")


def _source_dir(dest: Path) -> Path:
    """The script-mode source folder: train.py, requirements.txt and the lambdaforge package."""
    data, _ = source_bundle()
    with tarfile.open(fileobj=BytesIO(data), mode="r:gz") as tar:
        tar.extractall(dest, filter="data")
    return dest


def build_trainer(spec: CloudTrainingSpec, boto_session: Any, source_dir: Path) -> Any:
    from sagemaker.core.helper.session_helper import Session
    from sagemaker.core.shapes import MetricDefinition
    from sagemaker.train import ModelTrainer
    from sagemaker.train.configs import CheckpointConfig, Compute, OutputDataConfig, SourceCode, StoppingCondition

    spec.validate()
    stopping = StoppingCondition(max_runtime_in_seconds=spec.max_runtime_s,
                                 max_wait_time_in_seconds=spec.max_wait_s if spec.spot else None)
    hps = {**(spec.hyperparameters or {}), "recipe": spec.recipe}
    if spec.dataset_version:
        hps["dataset_version"] = spec.dataset_version
    trainer = ModelTrainer(
        training_image=spec.training_image,
        source_code=SourceCode(source_dir=str(source_dir), entry_script="train.py", requirements="requirements.txt"),
        compute=Compute(instance_type=spec.instance_type, instance_count=spec.instance_count,
                        enable_managed_spot_training=spec.spot),
        stopping_condition=stopping,
        hyperparameters=hps,
        role=spec.role_arn,
        base_job_name=f"lf-{spec.recipe}-cli"[:40],
        output_data_config=OutputDataConfig(s3_output_path=f"s3://{spec.bucket}/training/"),
        # the code goes to the stack's artifacts bucket, under source/ where the SageMaker role may read it
        sagemaker_session=Session(boto_session=boto_session, default_bucket=spec.bucket,
                                  default_bucket_prefix="source/cli"),
    )
    trainer = trainer.with_metric_definitions([MetricDefinition(name=d["Name"], regex=d["Regex"])
                                               for d in metric_definitions()])
    return trainer.with_checkpoint_config(CheckpointConfig(s3_uri=f"s3://{spec.bucket}/checkpoints/cli/{spec.recipe}/",
                                                           local_path="/opt/ml/checkpoints"))


def start_training(spec: CloudTrainingSpec, boto_session: Any) -> str:
    """Create the job (without waiting); returns its name."""
    from sagemaker.train.configs import InputData

    sm = boto_session.client("sagemaker")
    before = {j["TrainingJobName"] for j in sm.list_training_jobs(NameContains=f"lf-{spec.recipe}",
                                                                  MaxResults=100)["TrainingJobSummaries"]}
    with tempfile.TemporaryDirectory(prefix="lf-source-") as tmp:
        trainer = build_trainer(spec, boto_session, _source_dir(Path(tmp)))
        try:
            trainer.train(input_data_config=[InputData(channel_name="train", data_source=spec.data_uri)],
                          wait=False, logs=False)
        except Exception as exc:
            raise CloudError(f"SageMaker did not accept the training job: {exc}") from exc
    after = sm.list_training_jobs(NameContains=f"lf-{spec.recipe}", SortBy="CreationTime", SortOrder="Descending",
                                  MaxResults=100)["TrainingJobSummaries"]
    new = [j["TrainingJobName"] for j in after if j["TrainingJobName"] not in before]
    if not new:
        raise CloudError("the training job was submitted but cannot be found")
    return str(new[0])


TERMINAL = ("Completed", "Failed", "Stopped")


def follow(sm: Any, job_name: str, on_update: Callable[[dict[str, Any]], None], *, poll_s: float = 15.0,
           timeout_s: float = 24 * 3600) -> dict[str, Any]:
    deadline = time.time() + timeout_s
    while True:
        described: dict[str, Any] = sm.describe_training_job(TrainingJobName=job_name)
        on_update(described)
        if described["TrainingJobStatus"] in TERMINAL or time.time() > deadline:
            return described
        time.sleep(poll_s)


def download_model(s3: Any, described: dict[str, Any], out: Path) -> Path:
    from lambdaforge.artifact import open_model_dir, safe_extract
    from lambdaforge.s3transfer import download_file

    uri = (described.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    if not uri:
        raise CloudError(f"training job {described['TrainingJobName']} has no model artifact")
    from botocore.exceptions import ClientError

    with tempfile.TemporaryDirectory(prefix="lf-download-") as tmp:
        tarball = Path(tmp) / "model.tar.gz"
        try:
            download_file(s3, uri, tarball)
        except ClientError as exc:
            raise CloudError(f"{uri}: cannot download the model artifact ({exc.response['Error']['Code']})") from exc
        safe_extract(tarball, out)
    open_model_dir(out)  # verified before anyone uses it
    return out
