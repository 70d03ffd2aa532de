"""Which stack a command works on: the local cloud or a deployed stack, chosen here and nowhere else.

This is the only module outside `lambdaforge.local` that imports it. Below the choice, commands
get a `StackRef` and make the same boto3 calls whichever stack it is; `lambdaforge up` and
`lambdaforge serve`, which run things on this machine, drive the local cloud through `LocalTarget`
and `local_gateway`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lambdaforge import envvars
from lambdaforge.cloud.runs import RunProgress, RunResult
from lambdaforge.cloud.stack import StackRef, find_stack

if TYPE_CHECKING:
    from lambdaforge.local.gateway import LocalGateway

# The inference handler's environment when `lambdaforge serve` runs it in this process.
SERVE_ENV = {
    "POWERTOOLS_SERVICE_NAME": "inference",
    "POWERTOOLS_METRICS_NAMESPACE": "lambdaforge",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}


def resolve_target(stack: str | None, region: str | None, *, local: bool,
                   state_dir: Path | None = None) -> StackRef:
    """`--local`: the running local cloud (`lambdaforge up`); otherwise the deployed stack (--stack, --region)."""
    if local:
        from lambdaforge.local.cloud import running_stack

        return running_stack(state_dir)
    return find_stack(stack, region)


class LocalTarget:
    """The embedded cloud with the stack from template.yaml and its API on loopback, for `lambdaforge up`."""

    def __init__(self, *, state_dir: Path | None, parameters: dict[str, str],
                 echo: Callable[[str], None] | None = None) -> None:
        from lambdaforge.local.cloud import LocalCloud

        self._cloud = LocalCloud(state_dir=state_dir, parameters=parameters, echo=echo)
        self._gateway: LocalGateway | None = None

    def start(self) -> StackRef:
        self._cloud.start()
        return self._cloud.stack_ref()

    @property
    def state_dir(self) -> Path:
        return self._cloud.state_dir

    @property
    def endpoint(self) -> str:
        return self._cloud.endpoint

    def serve_api(self, port: int) -> str:
        """Start the API gateway (the state file then carries its URL); returns the URL."""
        from lambdaforge.local.up import start_gateway

        self._gateway = start_gateway(self._cloud, port)
        return self._gateway.url

    def next_run(self, known: set[str], timeout: float) -> str | None:
        from lambdaforge.local.up import wait_for_new_execution

        return wait_for_new_execution(self._cloud, known, timeout=timeout)

    def follow(self, execution: str, on_update: Callable[[RunProgress], None] | None = None) -> RunResult:
        from lambdaforge.local.up import follow

        return follow(self._cloud, execution, on_update)

    def sample_body(self, api_url: str) -> dict[str, Any]:
        from lambdaforge.local.up import sample_body

        return sample_body(api_url)

    def predict(self, api_url: str, body: dict[str, Any]) -> dict[str, Any]:
        from lambdaforge.local.up import predict

        return predict(api_url, body)

    def stop(self) -> None:
        self._cloud.stop()


def inference_invoker(model: Path, *, verbose: bool = False) -> object:
    """The inference handler from functions/inference, in this process, pinned to `model`."""
    from lambdaforge.artifact import open_model_dir
    from lambdaforge.local.inprocess import InProcessFunction
    from lambdaforge.project import functions_dir

    open_model_dir(model)  # refuse a model that does not verify before starting anything
    env = {**SERVE_ENV, envvars.MODEL_URI: str(Path(model).resolve())}
    if verbose:
        env["POWERTOOLS_LOG_LEVEL"] = "INFO"
        env.pop("POWERTOOLS_METRICS_DISABLED")
    for key in (envvars.REGISTRY_TABLE, envvars.RECIPE):  # serve the model named, not the live one
        os.environ.pop(key, None)
    return InProcessFunction(functions_dir() / "inference", env=env)


def local_gateway(invoker: object, *, host: str, port: int,
                  access_log: Callable[[str], None] | None) -> LocalGateway:
    """The local API gateway in front of an in-process function (not started: the caller serves it)."""
    from lambdaforge.local.gateway import LocalGateway

    return LocalGateway(invoker, host=host, port=port, access_log=access_log)  # type: ignore[arg-type]
