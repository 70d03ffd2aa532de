"""Working with the real cloud: deploy preflight and command construction, `train --cloud` through the
SageMaker SDK (under moto), `invoke` with SigV4 and JWT against the local gateway, and `logs`."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.credentials import Credentials
from botocore.stub import Stubber
from moto import mock_aws

from lambdaforge import runtime
from lambdaforge.cloud import preflight
from lambdaforge.cloud.deploy import plan_deploy, samconfig_overrides
from lambdaforge.cloud.errors import CloudError, PreflightError
from lambdaforge.cloud.invoke import call_api
from lambdaforge.cloud.logs import function_source, tail, training_source
from lambdaforge.cloud.stack import StackRef
from lambdaforge.local.auth import jwt_authorizer, sigv4_authorizer
from lambdaforge.local.gateway import LocalGateway
from lambdaforge.local.inprocess import InProcessFunction
from lambdaforge.training import METRIC_DEFINITIONS

ROOT = Path(__file__).resolve().parents[2]
QUIET = {"POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_LOG_LEVEL": "ERROR",
         "POWERTOOLS_SERVICE_NAME": "inference", "POWERTOOLS_METRICS_NAMESPACE": "lambdaforge"}


# ---------------------------------------------------------------- preflight: each failure names problem and fix


def test_preflight_region() -> None:
    assert preflight.check_region("eu-west-1").ok
    check = preflight.check_region(None)
    assert not check.ok and "no AWS region" in check.detail and "--region" in check.fix


def test_preflight_missing_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    check = preflight.check_credentials("us-east-1", boto3.Session(region_name="us-east-1"))
    assert not check.ok and check.detail == "no AWS credentials found" and "aws configure" in check.fix


def test_preflight_rejected_credentials() -> None:
    sts = boto3.client("sts", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b")
    stub = Stubber(sts)
    stub.add_client_error("get_caller_identity", "InvalidClientTokenId", "The security token is invalid")

    class Session:
        def get_credentials(self) -> Any:
            return Credentials("a", "b")

        def client(self, *args: Any, **kwargs: Any) -> Any:
            return sts

    with stub:
        check = preflight.check_credentials("us-east-1", Session())
    assert not check.ok and "rejected" in check.detail and "InvalidClientTokenId" in check.detail
    assert "refresh" in check.fix


def test_preflight_valid_credentials() -> None:
    with mock_aws():
        check = preflight.check_credentials("us-east-1", boto3.Session(region_name="us-east-1"))
    assert check.ok and "123456789012" in check.detail


def test_preflight_sam(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert preflight.check_sam(ROOT).ok
    monkeypatch.setenv("PATH", str(tmp_path))
    check = preflight.check_sam(tmp_path)
    assert not check.ok and "not installed" in check.detail and "make tools" in check.fix


def test_preflight_container_runtime(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "docker"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    check = preflight.check_container_runtime()
    assert not check.ok and "cannot build the image functions" in check.detail
    assert "--inference-image URI --quantize-image URI" in check.fix
    assert preflight.check_container_runtime(runner=lambda cmd: 0).ok


def test_preflight_training_image() -> None:
    check, uri = preflight.check_training_image("eu-west-1", "ml.g5.xlarge")
    assert check.ok and uri is not None and "pytorch-training" in uri and "gpu" in uri
    check, uri = preflight.check_training_image("xx-nowhere-1", "ml.g5.xlarge")
    assert not check.ok and uri is None and "xx-nowhere-1" in check.detail and "--training-image" in check.fix


def test_preflight_template_lint(tmp_path: Path) -> None:
    sam = preflight.find_sam(ROOT)
    assert preflight.check_template(sam, ROOT / "template.yaml", "us-east-1").ok
    bad = tmp_path / "template.yaml"
    bad.write_text("AWSTemplateFormatVersion: '2010-09-09'\nResources:\n  Q:\n    Type: AWS::SQS::Queue\n"
                   "    Properties:\n      MessageRetentionPeriod: not-a-number\n")
    check = preflight.check_template(sam, bad, "us-east-1")
    assert not check.ok and "does not lint" in check.detail


def test_failed_checks_are_reported_together_with_their_fixes() -> None:
    with pytest.raises(PreflightError) as err:
        preflight.raise_on_failures([preflight.check_region(None), preflight.Check("SAM CLI", False, "missing", "x")])
    text = str(err.value)
    assert "region: no AWS region" in text and "SAM CLI: missing" in text and text.count("fix:") == 2


def test_deploy_without_region_or_credentials_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "x"), "AWS_CONFIG_FILE": str(tmp_path / "x"),
                "AWS_EC2_METADATA_DISABLED": "true"})
    proc = subprocess.run([sys.executable, "-m", "lambdaforge.cli", "deploy", "--dry-run"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    out = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 2, out
    assert "deploy preflight failed" in out and "no AWS region" in out and "fix:" in out
    assert "Traceback" not in out


# ---------------------------------------------------------------- deploy command construction (SAM is not run)


def test_deploy_plan_builds_and_deploys_from_samconfig() -> None:
    plan = plan_deploy(ROOT, sam="sam", stack="prod", region="eu-west-1", training_image="img:1", guided=True,
                       python312_dir="/opt/py312/bin")
    assert plan.build[:2] == ["sam", "build"] and plan.build[plan.build.index("--template-file") + 1].endswith(
        "template.yaml")
    assert plan.deploy[:2] == ["sam", "deploy"] and "--guided" in plan.deploy
    assert plan.deploy[plan.deploy.index("--stack-name") + 1] == "prod"
    assert plan.deploy[plan.deploy.index("--region") + 1] == "eu-west-1"
    overrides = plan.deploy[plan.deploy.index("--parameter-overrides") + 1:]
    overrides = [o for o in overrides if "=" in o and not o.startswith("-")]
    assert "TrainingImageUri=img:1" in overrides
    for key, value in samconfig_overrides(ROOT).items():  # samconfig's overrides are kept, not replaced
        assert f"{key}={value}" in overrides
    assert plan.env["PATH"].startswith("/opt/py312/bin")


def test_sam_build_gets_the_architecture_the_deploy_gets(monkeypatch: pytest.MonkeyPatch) -> None:
    """`sam build` builds the images for the functions' Architectures: without the parameter it builds x86_64
    images that an arm64 deploy would then run."""
    from lambdaforge.cloud import deploy

    monkeypatch.setattr(deploy, "_check_can_build_for", lambda architecture: None)  # QEMU is not the point here
    plan = plan_deploy(ROOT, sam="sam", stack="prod", region="eu-west-1", training_image="img:1",
                       extra_parameters={"Architecture": "arm64"})
    build = plan.build[plan.build.index("--parameter-overrides") + 1:]
    deploy = [o for o in plan.deploy[plan.deploy.index("--parameter-overrides") + 1:] if "=" in o]
    assert "Architecture=arm64" in build and "Architecture=arm64" in deploy
    assert set(deploy) <= set(build)


def test_building_arm64_images_on_x86_needs_qemu(tmp_path: Path) -> None:
    from lambdaforge.cloud.deploy import _check_can_build_for

    _check_can_build_for("x86_64", machine="x86_64", binfmt=tmp_path)
    _check_can_build_for("arm64", machine="aarch64", binfmt=tmp_path)
    with pytest.raises(CloudError, match=r"cannot be built on this x86_64 machine.*qemu-aarch64.*--inference-image"):
        _check_can_build_for("arm64", machine="x86_64", binfmt=tmp_path)
    (tmp_path / "qemu-aarch64").write_text("enabled\n")
    _check_can_build_for("arm64", machine="x86_64", binfmt=tmp_path)
    with pytest.raises(CloudError, match="must be x86_64 or arm64"):
        _check_can_build_for("ppc64le", machine="x86_64", binfmt=tmp_path)


def test_deploy_plan_with_images_built_elsewhere() -> None:
    plan = plan_deploy(ROOT, sam="sam", stack="prod", region="us-east-1", training_image="img:1",
                       inference_image="1.dkr.ecr.us-east-1.amazonaws.com/inf:7",
                       quantize_image="1.dkr.ecr.us-east-1.amazonaws.com/q:7")
    assert plan.template.name == "prebuilt-images.template.yaml"
    text = plan.template.read_text()
    assert "packaging/inference/Dockerfile" not in text and "packaging/quantize/Dockerfile" not in text
    assert "InferenceImageUri=1.dkr.ecr.us-east-1.amazonaws.com/inf:7" in plan.deploy
    assert "InferenceFunction=1.dkr.ecr.us-east-1.amazonaws.com/inf" in plan.deploy
    with pytest.raises(CloudError, match="pass both"):
        plan_deploy(ROOT, sam="sam", stack="p", region="us-east-1", training_image="i", inference_image="x:1")


# ---------------------------------------------------------------- train --cloud through ModelTrainer, under moto


def test_train_cloud_submits_the_harness_with_spot_checkpoints_and_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    from lambdaforge.cloud.training import CloudTrainingSpec, download_model, follow, start_training

    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")
    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        s3 = session.client("s3")
        for bucket in ("lf-artifacts", "lf-data"):
            s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket="lf-data", Key="data/digits/a.csv", Body=b"x")
        role = session.client("iam").create_role(RoleName="sm", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        captured: dict[str, Any] = {}
        session.events.register("provide-client-params.sagemaker.CreateTrainingJob",
                                lambda params, **_: captured.update(params))
        image = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5-gpu-py311"
        spec = CloudTrainingSpec(recipe="digits", data_uri="s3://lf-data/data/digits/", role_arn=role,
                                 bucket="lf-artifacts", region="us-east-1", training_image=image,
                                 instance_type="ml.g5.2xlarge", instance_count=2, spot=True, max_runtime_s=1800,
                                 max_wait_s=3600, hyperparameters={"epochs": 7})
        name = start_training(spec, session)
        assert name.startswith("lf-digits-cli")
        assert captured["AlgorithmSpecification"]["TrainingImage"] == image
        assert captured["AlgorithmSpecification"]["MetricDefinitions"] == METRIC_DEFINITIONS
        assert captured["ResourceConfig"]["InstanceType"] == "ml.g5.2xlarge"
        assert captured["ResourceConfig"]["InstanceCount"] == 2
        assert captured["EnableManagedSpotTraining"] is True
        assert captured["StoppingCondition"] == {"MaxRuntimeInSeconds": 1800, "MaxWaitTimeInSeconds": 3600}
        assert captured["CheckpointConfig"] == {"S3Uri": "s3://lf-artifacts/checkpoints/cli/digits/",
                                                "LocalPath": "/opt/ml/checkpoints"}
        assert captured["HyperParameters"]["recipe"] == "digits" and captured["HyperParameters"]["epochs"] == "7"
        train = next(c for c in captured["InputDataConfig"] if c["ChannelName"] == "train")
        assert train["DataSource"]["S3DataSource"]["S3Uri"] == "s3://lf-data/data/digits/"
        assert captured["OutputDataConfig"]["S3OutputPath"] == "s3://lf-artifacts/training/"
        code = next(c for c in captured["InputDataConfig"] if c["ChannelName"] == "code")
        assert code["DataSource"]["S3DataSource"]["S3Uri"].startswith("s3://lf-artifacts/source/cli/")
        updates: list[str] = []
        described = follow(session.client("sagemaker"), name, lambda d: updates.append(d["TrainingJobStatus"]),
                           poll_s=0.1)
        assert updates and described["TrainingJobStatus"] == "Completed"
        with pytest.raises(CloudError, match="cannot download the model artifact"):
            download_model(s3, described, Path("/tmp/never"))


@pytest.mark.parametrize(("changes", "message"), [
    pytest.param({"data_uri": "/local/file.csv"}, "must be an s3:// URI", id="local-data"),
    pytest.param({"role_arn": ""}, "role ARN", id="no-role"),
    pytest.param({"max_runtime_s": 100, "max_wait_s": 50}, "at least the maximum runtime", id="wait-under-runtime"),
])
def test_train_cloud_refuses_a_bad_spec(changes: dict[str, Any], message: str) -> None:
    from lambdaforge.cloud.training import CloudTrainingSpec

    base = {"recipe": "digits", "role_arn": "arn:aws:iam::1:role/x", "bucket": "b", "region": "us-east-1",
            "training_image": "img", "data_uri": "s3://b/k"}
    with pytest.raises(CloudError, match=message):
        CloudTrainingSpec(**{**base, **changes}).validate()


# ---------------------------------------------------------------- invoke with auth, against the local gateway


@pytest.fixture
def signed_api(digits_int8: Path) -> Iterator[str]:
    runtime.reset()
    os.environ["MODEL_URI"] = str(digits_int8)
    function = InProcessFunction(ROOT / "functions" / "inference", env=QUIET)
    gateway = LocalGateway(function, port=0, authorizer=sigv4_authorizer("AKIDLOCAL", "secret-local", "us-east-1"))
    gateway.start()
    yield gateway.url
    gateway.stop()
    runtime.reset()


BODY = json.dumps({"instances": [[0] * 64]}).encode()


def test_invoke_signs_with_sigv4(signed_api: str) -> None:
    answer = call_api(f"{signed_api}/predict", BODY, auth="IAM", region="us-east-1",
                      credentials=Credentials("AKIDLOCAL", "secret-local"))
    assert answer.status == 200, answer.body
    assert answer.json()["predictions"][0]["label"] in "0123456789" and answer.latency_ms > 0
    unsigned = call_api(f"{signed_api}/predict", BODY, auth="NONE")
    assert unsigned.status == 401 and "Missing Authentication Token" in unsigned.body.decode()
    forged = call_api(f"{signed_api}/predict", BODY, auth="IAM", region="us-east-1",
                      credentials=Credentials("AKIDLOCAL", "wrong-secret"))
    assert forged.status == 403 and "does not match" in forged.body.decode()
    elsewhere = call_api(f"{signed_api}/predict", BODY, auth="IAM", region="eu-west-1",
                         credentials=Credentials("AKIDLOCAL", "secret-local"))
    assert elsewhere.status == 401 and "region us-east-1" in elsewhere.body.decode()


def test_the_cli_invoke_command_signs_too(signed_api: str, tmp_path: Path) -> None:
    request = tmp_path / "request.json"
    request.write_bytes(BODY)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "AKIDLOCAL", "AWS_SECRET_ACCESS_KEY": "secret-local",
           "AWS_DEFAULT_REGION": "us-east-1"}
    proc = subprocess.run([sys.executable, "-m", "lambdaforge.cli", "invoke", "--url", signed_api, "--json",
                           str(request), "--auth", "IAM"], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "HTTP 200" in proc.stdout and "IAM auth" in proc.stdout and '"predictions"' in proc.stdout
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    proc = subprocess.run([sys.executable, "-m", "lambdaforge.cli", "invoke", "--url", signed_api, "--json",
                           str(bad), "--auth", "IAM"], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 2 and "bad.json: not valid JSON" in " ".join(proc.stderr.split())


def _jwt(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part(claims)}.sig"


def test_invoke_sends_a_bearer_token_for_jwt(digits_int8: Path) -> None:
    runtime.reset()
    os.environ["MODEL_URI"] = str(digits_int8)
    function = InProcessFunction(ROOT / "functions" / "inference", env=QUIET)
    gateway = LocalGateway(function, port=0, authorizer=jwt_authorizer("https://issuer", ["lambdaforge"])).start()
    try:
        good = _jwt({"iss": "https://issuer", "aud": "lambdaforge", "exp": time.time() + 60})
        assert call_api(f"{gateway.url}/health", None, method="GET", auth="JWT", token=good).status == 200
        wrong = _jwt({"iss": "https://other", "aud": "lambdaforge"})
        assert call_api(f"{gateway.url}/health", None, method="GET", auth="JWT", token=wrong).status == 401
        with pytest.raises(CloudError, match="pass --token"):
            call_api(f"{gateway.url}/health", None, method="GET", auth="JWT")
    finally:
        gateway.stop()
        runtime.reset()


# ---------------------------------------------------------------- logs


def test_logs_of_a_function_and_of_a_training_job() -> None:
    with mock_aws():
        lam = boto3.client("lambda", region_name="us-east-1")
        logs = boto3.client("logs", region_name="us-east-1")
        role = boto3.client("iam", region_name="us-east-1").create_role(
            RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        import io
        import zipfile

        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("app.py", "def h(e, c): return e")
        lam.create_function(FunctionName="lf-inference", Runtime="python3.12", Role=role, Handler="app.h",
                            Code={"ZipFile": buf.getvalue()})
        now = int(time.time() * 1000)
        logs.create_log_group(logGroupName="/aws/lambda/lf-inference")
        logs.create_log_stream(logGroupName="/aws/lambda/lf-inference", logStreamName="s1")
        logs.put_log_events(logGroupName="/aws/lambda/lf-inference", logStreamName="s1",
                            logEvents=[{"timestamp": now, "message": "predicted 3"},
                                       {"timestamp": now + 1, "message": "predicted 7"}])
        ref = StackRef(name="lf", region="us-east-1", outputs={"InferenceFunctionName": "lf-inference"})
        source = function_source(ref, "inference")
        assert source.group == "/aws/lambda/lf-inference"
        seen: list[str] = []
        assert tail(logs, source, now - 60_000, lambda e: seen.append(e["message"])) == 2
        assert seen == ["predicted 3", "predicted 7"]
        with pytest.raises(CloudError, match="unknown function 'nope'"):
            function_source(ref, "nope")

        sm = boto3.client("sagemaker", region_name="us-east-1")
        with pytest.raises(CloudError, match="no lambdaforge training job yet"):
            training_source(ref, None)
        def create_job(name: str) -> None:
            sm.create_training_job(TrainingJobName=name, RoleArn=role,
                                   AlgorithmSpecification={"TrainingImage": "img", "TrainingInputMode": "File"},
                                   OutputDataConfig={"S3OutputPath": "s3://b/o"},
                                   ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1,
                                                   "VolumeSizeInGB": 10},
                                   StoppingCondition={"MaxRuntimeInSeconds": 60})

        create_job("lf-digits-abc")
        logs.create_log_group(logGroupName="/aws/sagemaker/TrainingJobs")
        logs.create_log_stream(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName="lf-digits-abc/algo-1")
        logs.create_log_stream(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName="other-job/algo-1")
        logs.put_log_events(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName="lf-digits-abc/algo-1",
                            logEvents=[{"timestamp": now, "message": "[lambdaforge] epoch=1 train_loss=0.5"}])
        logs.put_log_events(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName="other-job/algo-1",
                            logEvents=[{"timestamp": now, "message": "not ours"}])
        job = training_source(ref, None)
        assert job.stream_prefix == "lf-digits-abc/"
        lines: list[str] = []
        tail(logs, job, now - 60_000, lambda e: lines.append(e["message"]))
        assert lines == ["[lambdaforge] epoch=1 train_loss=0.5"]
        time.sleep(1.1)  # CreationTime has second resolution in some implementations
        create_job("lf-digits-newer")
        assert training_source(ref, None).stream_prefix == "lf-digits-newer/"  # the latest job, not the first


def test_preflight_poll_budget(tmp_path: Path) -> None:
    """A Step Functions execution holds 25,000 history events: the poll loop's longest run must fit."""
    import shutil

    check = preflight.check_poll_budget(ROOT)
    assert check.ok and "at most 240 polls" in check.detail, check  # defaults: 7200 + 3600 + 3600 s every 60 s
    shutil.copy(ROOT / "template.yaml", tmp_path / "template.yaml")
    overrides = 'MaxWaitSeconds=\\"86400\\" TrainingPollSeconds=\\"10\\"'
    (tmp_path / "samconfig.toml").write_text(f'[default.deploy.parameters]\nparameter_overrides = "{overrides}"\n')
    check = preflight.check_poll_budget(tmp_path)
    assert not check.ok and "over the 2000" in check.detail and "at least 47" in check.fix, check
    from lambdaforge.project import load_template

    machine = load_template(ROOT / "template.yaml")["Resources"]["RetrainStateMachine"]["Properties"]
    assert machine["DefinitionSubstitutions"]["PollMarginSeconds"] == str(preflight.POLL_MARGIN_SECONDS)
