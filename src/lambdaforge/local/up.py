"""`lambdaforge up`: running the whole pipeline on one machine.

The CLI starts the embedded cloud and uploads data to the data bucket (which starts a retraining
run exactly as in AWS); this module finds the run, follows it, and serves and asks the local API
gateway. How a run is shown is the CLI's business: `follow` only reports progress.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from lambdaforge.cloud.runs import RunProgress, RunResult
from lambdaforge.local.cloud import LocalCloud
from lambdaforge.local.errors import LocalCloudError
from lambdaforge.local.gateway import LocalGateway

__all__ = ["RunProgress", "RunResult", "follow", "predict", "sample_body", "start_gateway",
           "wait_for_new_execution"]


def _progress(cloud: LocalCloud, execution: str, status: str, states: list[str], started: float) -> RunProgress:
    live = cloud.trainer.live_metrics if cloud.trainer else {}
    job = list(live)[-1] if live else None
    return RunProgress(execution=execution, status=status, states=states, started=started, job=job,
                       metrics=dict(live[job]) if job else {})


def follow(cloud: LocalCloud, execution: str, on_update: Callable[[RunProgress], None] | None = None,
           timeout: float = 900.0) -> RunResult:
    """Poll a run until it ends (or `timeout`), telling `on_update` how far it got each time."""
    sfn = cloud.client("stepfunctions")
    arn = cloud.outputs["StateMachineArn"].replace(":stateMachine:", ":execution:") + f":{execution}"
    started = time.time()
    states: list[str] = []
    status = "RUNNING"
    while time.time() - started < timeout:
        try:
            status = sfn.describe_execution(executionArn=arn)["status"]
            events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        except sfn.exceptions.ExecutionDoesNotExist:
            time.sleep(0.3)
            continue
        states = [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]
        if on_update:
            on_update(_progress(cloud, execution, status, states, started))
        if status != "RUNNING":
            break
        time.sleep(0.5)
    error = None
    if status != "SUCCEEDED":
        failure = [e for e in sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
                   if e["type"] == "TaskStateEntered" and e["stateEnteredEventDetails"]["name"] == "RecordFailure"]
        if failure:
            state_input = json.loads(failure[-1]["stateEnteredEventDetails"]["input"])
            err = state_input.get("error", {})
            error = f"{err.get('Error')}: {str(err.get('Cause'))[:600]}"
    return RunResult(execution=execution, status=status, states=states, error=error, seconds=time.time() - started)


def wait_for_new_execution(cloud: LocalCloud, known: set[str], timeout: float) -> str | None:
    sfn = cloud.client("stepfunctions")
    deadline = time.time() + timeout
    while time.time() < deadline:
        executions = sfn.list_executions(stateMachineArn=cloud.outputs["StateMachineArn"])["executions"]
        new = [e for e in executions if e["name"] not in known]
        if new:
            return str(sorted(new, key=lambda e: e["startDate"])[0]["name"])
        time.sleep(0.3)
    return None


def sample_body(api_url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A valid request for whatever model is live, built from GET /model."""
    _loopback(api_url)
    with urllib.request.urlopen(urllib.request.Request(f"{api_url}/model", headers=headers or {}),  # noqa: S310
                                timeout=60) as resp:
        info = json.loads(resp.read())
    example: dict[str, Any] = info["example"]
    return example


def _loopback(url: str) -> None:
    if not url.startswith(("http://127.0.0.1:", "http://localhost:")):
        raise LocalCloudError(f"{url}: the local API is served on loopback only")


def predict(api_url: str, body: dict[str, Any]) -> dict[str, Any]:
    _loopback(api_url)
    request = urllib.request.Request(f"{api_url}/predict", data=json.dumps(body).encode(),  # noqa: S310
                                     headers={"content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=60) as resp:  # noqa: S310 - loopback only
        answer: dict[str, Any] = json.loads(resp.read())
        return answer


def start_gateway(cloud: LocalCloud, port: int, log: Callable[[str], None] | None = None) -> LocalGateway:
    gateway = LocalGateway(cloud.api_invoke, port=port, authorizer=cloud.authorizer(), access_log=log).start()
    cloud.outputs["ApiUrl"] = gateway.url
    cloud.write_state()  # the state file now carries the API URL too
    return gateway
