"""`lambdaforge up`: the whole pipeline on one machine.

Starts the embedded cloud, uploads data to the data bucket (which starts a retraining run exactly
as in AWS), follows the run, then serves the live model through the local API gateway while new
uploads keep retraining and promoting.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from lambdaforge.local.cloud import LocalCloud
from lambdaforge.local.errors import LocalCloudError
from lambdaforge.local.gateway import LocalGateway


@dataclass(frozen=True)
class RunResult:
    execution: str
    status: str
    states: list[str]
    error: str | None
    seconds: float


def upload_path(s3: Any, bucket: str, recipe: str, path: Path, name: str | None = None) -> str:
    """A file goes to data/<recipe>/<name>; a folder's files go under data/<recipe>/<name>/, then _READY."""
    path = Path(path)
    if path.is_file():
        key = f"data/{recipe}/{name or path.name}"
        s3.upload_file(str(path), bucket, key)
        return key
    if not path.is_dir():
        raise LocalCloudError(f"{path}: no such file or folder")
    prefix = f"data/{recipe}/{name or path.name}/"
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise LocalCloudError(f"{path}: the folder has no files")
    for file in files:
        s3.upload_file(str(file), bucket, prefix + file.relative_to(path).as_posix())
    s3.put_object(Bucket=bucket, Key=prefix + "_READY", Body=b"")
    return prefix + "_READY"


def _render(cloud: LocalCloud, execution: str, status: str, states: list[str], started: float) -> Table:
    table = Table(title=f"retraining run {execution}", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("workflow", f"{status} - {states[-1] if states else 'starting'}")
    table.add_row("elapsed", f"{time.time() - started:.0f} s")
    jobs = list(cloud.trainer.live_metrics) if cloud.trainer else []
    if jobs and cloud.trainer:
        job = jobs[-1]
        metrics = cloud.trainer.live_metrics[job]
        table.add_row("training job", job)
        if metrics:
            table.add_row("metrics", "  ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())))
    table.add_row("path", " > ".join(states[-8:]))
    return table


def follow(cloud: LocalCloud, execution: str, console: Console | None, timeout: float = 900.0) -> RunResult:
    sfn = cloud.client("stepfunctions")
    arn = cloud.outputs["StateMachineArn"].replace(":stateMachine:", ":execution:") + f":{execution}"
    started = time.time()
    states: list[str] = []
    status = "RUNNING"
    live = Live(console=console, refresh_per_second=4, transient=False) if console else None
    if live:
        live.start()
    try:
        while time.time() - started < timeout:
            try:
                status = sfn.describe_execution(executionArn=arn)["status"]
                events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
            except sfn.exceptions.ExecutionDoesNotExist:
                time.sleep(0.3)
                continue
            states = [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]
            if live:
                live.update(_render(cloud, execution, status, states, started))
            if status != "RUNNING":
                break
            time.sleep(0.5)
    finally:
        if live:
            live.stop()
            if console:
                console.print()
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
