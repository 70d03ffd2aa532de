"""Finding a stack's resources: the CloudFormation outputs of a deployed stack, or the state file
of a running local cloud (`lambdaforge up`). Commands then use the same boto3 calls for both."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lambdaforge import envvars
from lambdaforge.cloud.errors import CloudError, StackNotFoundError

DEFAULT_STACK = "lambdaforge"


@dataclass(frozen=True)
class StackRef:
    name: str
    region: str
    outputs: dict[str, str]
    endpoint_url: str | None = None  # set for the local cloud

    @property
    def local(self) -> bool:
        return self.endpoint_url is not None

    def output(self, key: str) -> str:
        value = self.outputs.get(key)
        if not value:
            raise CloudError(f"stack {self.name} has no output {key!r}; is it a lambdaforge stack?")
        return value

    def _kwargs(self) -> dict[str, Any]:
        if self.endpoint_url:  # the local cloud: its endpoint and moto's fixed credentials
            return {"region_name": self.region, "endpoint_url": self.endpoint_url,
                    "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        return {"region_name": self.region}

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, **self._kwargs())

    def resource(self, service: str) -> Any:
        import boto3

        return boto3.resource(service, **self._kwargs())


def local_state_file(state_dir: Path | None = None) -> Path:
    """Explicit folder, then LAMBDAFORGE_HOME, then the project's .lambdaforge/."""
    home = state_dir or (Path(os.environ[envvars.HOME]) if os.environ.get(envvars.HOME) else None)
    if home:
        return Path(home) / "local.json"
    from lambdaforge.local.project import project_root

    return project_root() / ".lambdaforge" / "local.json"


def resolve_stack(stack: str | None = None, region: str | None = None, *, local: bool = False,
                  state_dir: Path | None = None) -> StackRef:
    if local:
        path = local_state_file(state_dir)
        if not path.is_file():
            raise StackNotFoundError(f"{path}: no local cloud is running", hint="start one with `lambdaforge up`")
        state = json.loads(path.read_text())
        if not _pid_alive(int(state.get("pid", 0))):
            raise StackNotFoundError(f"{path}: the local cloud that wrote it is not running any more",
                                     hint="start one with `lambdaforge up`")
        return StackRef(name=state["stack"], region=state["region"], outputs=state["outputs"],
                        endpoint_url=state["endpoint"])
    name = envvars.setting(stack, envvars.STACK_NAME, DEFAULT_STACK)
    resolved_region = envvars.region(region)
    if not resolved_region:
        raise CloudError("no AWS region", hint="pass --region, or set AWS_REGION / AWS_DEFAULT_REGION")
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        out = boto3.client("cloudformation", region_name=resolved_region).describe_stacks(StackName=name)
    except NoCredentialsError as exc:
        raise CloudError("no AWS credentials found", hint="run `aws configure` or set AWS_PROFILE") from exc
    except ClientError as exc:
        if "does not exist" in str(exc):
            raise StackNotFoundError(f"stack {name} does not exist in {resolved_region}",
                                     hint="deploy it with `lambdaforge deploy`, or pass --stack/--region") from exc
        raise CloudError(f"cannot describe stack {name}: {exc}") from exc
    except BotoCoreError as exc:
        raise CloudError(f"cannot reach CloudFormation in {resolved_region}: {exc}") from exc
    stack_desc = out["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack_desc.get("Outputs", [])}
    return StackRef(name=name, region=resolved_region, outputs=outputs)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
