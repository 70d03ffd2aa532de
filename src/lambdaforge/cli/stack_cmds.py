"""Pipeline commands: run it locally (up, upload) and operate it anywhere (status, rollback)."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from lambdaforge.cli.app import LocalOpt, RecipeOpt, RegionOpt, StackOpt, app, console
from lambdaforge.cli.errors import CliError, CommandFailedError

if TYPE_CHECKING:
    from lambdaforge.cli.target import LocalTarget
    from lambdaforge.cloud.runs import RunProgress, RunResult
    from lambdaforge.cloud.stack import StackRef


@app.command()
def up(
    recipe: Annotated[str, typer.Option(help="which recipe the local stack serves and retrains")] = "digits",
    data_path: Annotated[Path | None, typer.Option("--data", help="data file or folder (default: shipped data)")]
    = None,
    port: Annotated[int, typer.Option(help="port of the local API on 127.0.0.1 (0: any free port)")] = 3000,
    auth: Annotated[str, typer.Option(help="API auth locally: NONE, IAM (SigV4) or JWT")] = "NONE",
    state_dir: Annotated[Path | None, typer.Option(help="where the local cloud keeps its files")] = None,
    once: Annotated[bool, typer.Option(help="stop after the first run is live and answered a prediction")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="print function and training logs")] = False,
) -> None:
    """Run the whole pipeline locally: embedded cloud, retraining run, then serve the live model."""
    from lambdaforge.cli.target import LocalTarget
    from lambdaforge.recipes import get_recipe

    if auth.upper() not in ("NONE", "IAM", "JWT"):
        raise CliError(f"--auth must be NONE, IAM or JWT, not {auth!r}")
    rec = get_recipe(recipe)
    echo = (lambda line: console.print(line, markup=False, highlight=False)) if verbose else None
    target = LocalTarget(state_dir=state_dir, parameters={"Recipe": recipe, "ApiAuth": auth.upper()}, echo=echo)
    with console.status("starting the local cloud (moto) and creating the stack from template.yaml"):
        ref = target.start()
    try:
        try:
            api_url = target.serve_api(port)
        except OSError as exc:
            raise CliError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}", hint="try --port 0") from exc
        console.print(f"local cloud: [bold]{target.endpoint}[/bold]  (any S3 client works: "
                      f"aws --endpoint-url {target.endpoint} s3 ...)")
        data = data_path or rec.write_sample_data(target.state_dir / "sample-data" / recipe)
        known: set[str] = set()
        _upload(ref, recipe, data)
        _first_run(target, known)
        _show_api(target, api_url)
        if once:
            return
        console.print("serving; upload new data with `lambdaforge upload PATH` to retrain. Ctrl-C stops.")
        while True:
            execution = target.next_run(known, timeout=3600)
            if execution is None:
                continue
            known.add(execution)
            result = _follow(target, execution)
            color = "green" if result.status == "SUCCEEDED" else "red"
            console.print(f"[{color}]run {execution}: {result.status}[/{color}]" +
                          (f" - {result.error}" if result.error else ""))
    except KeyboardInterrupt:
        console.print("stopping")
    finally:
        target.stop()


def _upload(ref: StackRef, recipe: str, path: Path, name: str | None = None) -> str:
    """The same upload for any stack: the data bucket's key layout starts a run."""
    from lambdaforge.cloud.data import upload_path

    bucket = ref.output("DataBucketName")
    key = upload_path(ref.client("s3"), bucket, recipe, path, name)
    console.print(f"uploaded {path} to s3://{bucket}/{key}")
    return key


def _first_run(target: LocalTarget, known: set[str]) -> None:
    execution = target.next_run(known, timeout=120)
    if execution is None:
        raise CommandFailedError("the upload started no retraining run; see `lambdaforge up --verbose`")
    result = _follow(target, execution)
    known.add(execution)
    if result.status != "SUCCEEDED":
        raise CommandFailedError(f"retraining run {execution} {result.status}: {result.error}")
    console.print(f"[green]run {execution} succeeded in {result.seconds:.0f} s; the model is live[/green]")


def _show_api(target: LocalTarget, api_url: str) -> None:
    body = target.sample_body(api_url)
    answer = target.predict(api_url, body)
    console.print(f"API: [bold]{api_url}[/bold]   docs: {api_url}/docs")
    console.print(f"try:\n  curl -s {api_url}/predict -H 'content-type: application/json' "
                  f"-d {shlex.quote(json.dumps(body, separators=(',', ':')))}")
    first = answer["predictions"][0]
    console.print(f"prediction: {first['label']} (score {first['score']:.3f}, model {answer['model']['version']})")


def _follow(target: LocalTarget, execution: str) -> RunResult:
    """Follow a run with a live table of its states and the training job's metrics."""
    with Live(console=console, refresh_per_second=4, transient=False) as live:
        result = target.follow(execution, lambda progress: live.update(_render_run(progress)))
    console.print()
    return result


def _render_run(progress: RunProgress) -> Table:
    table = Table(title=f"retraining run {progress.execution}", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("workflow", f"{progress.status} - {progress.states[-1] if progress.states else 'starting'}")
    table.add_row("elapsed", f"{time.time() - progress.started:.0f} s")
    if progress.job:
        table.add_row("training job", progress.job)
        if progress.metrics:
            table.add_row("metrics", "  ".join(f"{k}={v:.4g}" for k, v in sorted(progress.metrics.items())))
    table.add_row("path", " > ".join(progress.states[-8:]))
    return table


@app.command()
def upload(
    path: Annotated[Path, typer.Argument(help="a data file, or a folder (uploaded with a _READY marker)")],
    recipe: RecipeOpt = None,
    name: Annotated[str | None, typer.Option(help="object (or folder) name under data/<recipe>/")] = None,
    local: LocalOpt = True,
    stack: StackOpt = None,
    region: RegionOpt = None,
) -> None:
    """Upload data to the stack's data bucket, which starts a retraining run."""
    from lambdaforge.cli.target import resolve_target

    if not path.exists():
        raise CliError(f"{path}: no such file or folder")
    ref = resolve_target(stack, region, local=local)
    _upload(ref, recipe or ref.outputs.get("Recipe", "digits"), path, name)
    console.print("the trigger starts a run (see `lambdaforge status`)")


def _fmt(value: Any) -> str:
    return "-" if value in (None, "", []) else str(value)


@app.command()
def status(
    recipe: RecipeOpt = None,
    local: LocalOpt = False,
    stack: StackOpt = None,
    region: RegionOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """The live, previous and candidate models, the versions, and the recent runs."""
    from lambdaforge.cli.target import resolve_target
    from lambdaforge.registry import Catalog, Runs, keys

    ref = resolve_target(stack, region, local=local)
    target = recipe or ref.outputs.get("Recipe", "digits")
    table_name = ref.output("RegistryTableName")
    catalog = Catalog(table_name, table=ref.resource("dynamodb").Table(table_name))
    coordination = Runs(table_name, table=catalog.table)
    state, run_state = catalog.state(target), coordination.state(target)
    versions = sorted(catalog.versions(target), key=lambda v: v.version)
    runs = coordination.log(target, limit=10)
    alias = ref.client("lambda").get_alias(FunctionName=ref.output("InferenceFunctionName"), Name="live")
    if as_json:
        console.print_json(json.dumps({"recipe": target, "live": state.live, "previous": state.previous,
                                       "candidate": state.candidate, "running": run_state.running,
                                       "pending": run_state.pending, "last_failure": run_state.last_failure,
                                       "alias": {"version": alias["FunctionVersion"],
                                                 "routing": (alias.get("RoutingConfig") or {}).get(
                                                     "AdditionalVersionWeights", {})},
                                       "versions": [v.__dict__ for v in versions], "runs": runs}, default=str))
        return
    summary = Table(title=f"{target} on {ref.name}" + f" ({ref.where})",
                    show_header=False, title_justify="left")
    summary.add_column(style="bold")
    summary.add_column()
    weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
    routing = ", ".join(f"{w:.0%} to version {v}" for v, w in weights.items())
    summary.add_row("live", f"model v{_fmt(state.live)} (Lambda version {alias['FunctionVersion']}"
                            + (f"; canary: {routing}" if routing else "") + ")")
    summary.add_row("previous", f"model v{_fmt(state.previous)}")
    summary.add_row("candidate", f"model v{_fmt(state.candidate)}")
    summary.add_row("running", _fmt(run_state.running))
    summary.add_row("waiting data", _fmt((run_state.pending or {}).get("key")))
    if run_state.last_failure:
        summary.add_row("last failure", f"{run_state.last_failure.get('execution')}: "
                                        f"{run_state.last_failure.get('error')} "
                                        f"{str(run_state.last_failure.get('cause'))[:200]}")
    console.print(summary)
    table = Table(title="versions", title_justify="left")
    for col in ("version", "status", "accuracy", "quantization", "Lambda version", "training job", "created"):
        table.add_column(col)
    for v in versions:
        table.add_row(str(v.version), v.status, f"{v.metrics.get('accuracy', 0):.4f}", _fmt(v.quantization),
                      _fmt(v.lambda_version), _fmt(v.training_job), v.created_at)
    console.print(table)
    runs_table = Table(title="recent runs", title_justify="left")
    for col in ("run", "status", "dataset", "error"):
        runs_table.add_column(col)
    for run in runs:
        runs_table.add_row(run["sk"].removeprefix(keys.RUN_SK_PREFIX), run.get("status", "-"), _fmt(run.get("dataset")),
                           _fmt(run.get("error")))
    console.print(runs_table)


@app.command()
def rollback(
    recipe: RecipeOpt = None,
    local: LocalOpt = False,
    stack: StackOpt = None,
    region: RegionOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
) -> None:
    """Move alias `live` back to the previous model version (through the stack's promote function)."""
    from lambdaforge.cli.target import resolve_target

    ref = resolve_target(stack, region, local=local)
    target = recipe or ref.outputs.get("Recipe", "digits")
    if not yes and not typer.confirm(f"roll {target} on {ref.name} back to the previous model?"):
        raise typer.Abort()
    started = time.perf_counter()
    out = ref.client("lambda").invoke(FunctionName=ref.output("PromoteFunctionName"),
                                      Payload=json.dumps({"action": "rollback", "recipe": target}).encode())
    payload = json.loads(out["Payload"].read() or b"{}")
    if out.get("FunctionError"):
        raise CommandFailedError(f"rollback refused: {payload.get('errorMessage', payload)}")
    console.print(f"[green]{target}: live is model v{payload['to_version']} again[/green] "
                  f"(was v{payload['from_version']}; Lambda version {payload['lambda_version']}; "
                  f"{time.perf_counter() - started:.1f} s)")
