"""Deploy preflight: every check says what it found and, when it fails, how to fix it."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lambdaforge.cloud.errors import PreflightError

# The newest AWS PyTorch training image for Python 3.11, the tests' Python. It provides Python, CUDA and the
# sagemaker-training toolkit; the job's lock replaces its torch with the tested one (tests/infra/test_training_lock.py).
TRAINING_FRAMEWORK_VERSION = "2.5"
TRAINING_PY_VERSION = "py311"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def check_region(region: str | None) -> Check:
    if region:
        return Check("region", True, region)
    return Check("region", False, "no AWS region is configured",
                 "pass --region, set AWS_REGION, or add `region` to your AWS profile (aws configure)")


def check_credentials(region: str | None, session: Any = None) -> Check:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    session = session or boto3.Session(region_name=region)
    if session.get_credentials() is None:
        return Check("credentials", False, "no AWS credentials found",
                     "run `aws configure` (or `aws sso login`), or set AWS_PROFILE / AWS_ACCESS_KEY_ID")
    try:
        identity = session.client("sts", region_name=region or "us-east-1").get_caller_identity()
    except (ClientError, BotoCoreError) as exc:
        return Check("credentials", False, f"the credentials were rejected: {exc}",
                     "refresh them (aws sso login / new access keys) or pick another AWS_PROFILE")
    return Check("credentials", True, f"account {identity['Account']} as {identity['Arn']}")


def find_sam(root: Path) -> str | None:
    local = root / ".venv-tools" / "bin" / "sam"
    if local.exists():
        return str(local)
    return shutil.which("sam")


def check_sam(root: Path) -> Check:
    sam = find_sam(root)
    if sam is None:
        return Check("SAM CLI", False, "the SAM CLI is not installed",
                     "run `make tools` (installs it into .venv-tools) or install aws-sam-cli")
    try:
        version = subprocess.run([sam, "--version"], capture_output=True, text=True, timeout=60,
                                 check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return Check("SAM CLI", False, f"{sam} does not run: {exc}", "reinstall it with `make tools`")
    return Check("SAM CLI", True, f"{version} ({sam})")


def check_container_runtime(runner: Callable[[list[str]], int] | None = None) -> Check:
    """Image functions are built with Docker (or Finch); without one, images come from elsewhere."""
    run = runner or _exit_code
    for tool in ("docker", "finch"):
        if shutil.which(tool) and run([tool, "info"]) == 0:
            return Check("container runtime", True, f"{tool} is running")
    return Check("container runtime", False,
                 "no running container runtime (Docker or Finch): `sam build` cannot build the image functions",
                 "start Docker, or build the two images on a machine that has it (`lambdaforge package`, "
                 "then `docker build` and push to ECR) and pass them: "
                 "`lambdaforge deploy --inference-image URI --quantize-image URI`")


def check_training_image(region: str | None, instance_type: str) -> tuple[Check, str | None]:
    if not region:
        return Check("training image", False, "no region to look the image up in", "set the region first"), None
    try:
        from sagemaker.core import image_uris

        uri = image_uris.retrieve(framework="pytorch", region=region, version=TRAINING_FRAMEWORK_VERSION,
                                  py_version=TRAINING_PY_VERSION, instance_type=instance_type,
                                  image_scope="training")
    except ValueError as exc:
        return Check("training image", False,
                     f"no PyTorch {TRAINING_FRAMEWORK_VERSION} training image for {region}/{instance_type}: "
                     f"{str(exc).split('. ')[0]}",
                     "pick a supported region and instance type, or pass --training-image URI"), None
    except ImportError:
        return Check("training image", False, "the SageMaker SDK is not installed",
                     "pip install 'lambdaforge[cloud]'"), None
    return Check("training image", True, uri), str(uri)


HISTORY_POLL_BUDGET = 2000  # polls that fit a Step Functions execution's 25,000 history events (~11 per poll)
POLL_MARGIN_SECONDS = 3600  # the workflow's PollMarginSeconds


def check_poll_budget(root: Path) -> Check:
    """The workflow polls a job for at most MaxWait + MaxTraining + the margin: at the configured interval
    that must fit one execution's history, or the execution dies unrecorded, lock held, job running."""
    import shlex
    import tomllib

    from lambdaforge.project import load_template

    params = {k: str(v.get("Default", "")) for k, v in load_template(root / "template.yaml")["Parameters"].items()}
    try:
        config = tomllib.loads((root / "samconfig.toml").read_text(encoding="utf-8"))
        overrides = config["default"]["deploy"]["parameters"].get("parameter_overrides", "")
        pairs = shlex.split(overrides) if isinstance(overrides, str) else [str(p) for p in overrides]
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if sep:
                params[key] = value
    except (OSError, KeyError, AttributeError, TypeError, ValueError, tomllib.TOMLDecodeError):
        pass  # no overrides: the template's defaults
    try:
        limit = int(params["MaxWaitSeconds"]) + int(params["MaxTrainingSeconds"]) + POLL_MARGIN_SECONDS
        every = int(params["TrainingPollSeconds"])
    except (KeyError, ValueError) as exc:
        return Check("poll budget", False, f"cannot read the training limits: {exc}", "check samconfig.toml")
    polls = limit // max(every, 1)
    detail = f"at most {polls} polls ({limit} s every {every} s)"
    if polls <= HISTORY_POLL_BUDGET:
        return Check("poll budget", True, detail)
    return Check("poll budget", False, detail + f": over the {HISTORY_POLL_BUDGET} that fit one execution's history",
                 f"raise TrainingPollSeconds to at least {limit // HISTORY_POLL_BUDGET + 1}, or lower "
                 "MaxWaitSeconds/MaxTrainingSeconds (samconfig.toml parameter_overrides)")


def check_template(sam: str | None, template: Path, region: str | None) -> Check:
    if sam is None:
        return Check("template", False, "cannot lint without the SAM CLI", "run `make tools`")
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": region or "us-east-1"}
    proc = subprocess.run([sam, "validate", "--lint", "--template-file", str(template)], capture_output=True,
                          text=True, env=env, timeout=300, check=False)
    if proc.returncode != 0:
        lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
        return Check("template", False, f"{template} does not lint: {' | '.join(lines[-5:])}",
                     "fix the reported lines (sam validate --lint shows them all)")
    return Check("template", True, f"{template.name} is a valid SAM template")


def raise_on_failures(checks: list[Check]) -> None:
    failed = [c for c in checks if not c.ok]
    if failed:
        lines = [f"{c.name}: {c.detail}\n    fix: {c.fix}" for c in failed]
        raise PreflightError("deploy preflight failed:\n  " + "\n  ".join(lines))


def _exit_code(cmd: list[str]) -> int:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=20, check=False).returncode
    except (OSError, subprocess.SubprocessError):
        return 1
