"""A stack's resources as commands see them (`StackRef`), and finding a deployed stack by its
CloudFormation outputs. Commands use the same boto3 calls whichever stack the CLI chose."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lambdaforge import envvars
from lambdaforge.cloud.errors import CloudError, StackNotFoundError

DEFAULT_STACK = "lambdaforge"


@dataclass(frozen=True)
class StackRef:
    """A stack the commands operate: its outputs, and boto3 clients that reach it.

    A deployed stack gets clients from the usual credential chain; an emulated one (the local
    cloud builds its own StackRef) names its endpoint and fixed credentials.
    """

    name: str
    region: str
    outputs: dict[str, str]
    endpoint_url: str | None = None
    credentials: tuple[str, str] | None = None  # (access key id, secret key) of an emulated stack
    location: str = ""  # how to name where it runs; the region when empty

    @property
    def where(self) -> str:
        return self.location or self.region

    def output(self, key: str) -> str:
        value = self.outputs.get(key)
        if not value:
            raise CloudError(f"stack {self.name} has no output {key!r}; is it a lambdaforge stack?")
        return value

    def session(self) -> Any:
        import boto3

        key, secret = self.credentials or (None, None)
        return boto3.Session(region_name=self.region, aws_access_key_id=key, aws_secret_access_key=secret)

    def client(self, service: str) -> Any:
        return self.session().client(service, endpoint_url=self.endpoint_url)

    def resource(self, service: str) -> Any:
        return self.session().resource(service, endpoint_url=self.endpoint_url)


def find_stack(stack: str | None = None, region: str | None = None) -> StackRef:
    """A deployed stack by name (default lambdaforge) and region, from its CloudFormation outputs."""
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
