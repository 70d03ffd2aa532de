"""Serving commands: serve a model locally behind the local API gateway, and package the image."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lambdaforge.cli.app import app, console
from lambdaforge.cli.errors import CliError, CommandFailedError


def sample_curl(url: str, model: Path | str) -> str:
    import json

    from lambdaforge.runtime import fetch
    from lambdaforge.runtime.predictor import Predictor

    body = json.dumps(Predictor(fetch(str(model)), warm_up=False).sample_request(), separators=(",", ":"))
    return f"try:\n  curl -s {url}/predict -H 'content-type: application/json' -d '{body}'"


@app.command()
def serve(
    model: Annotated[Path, typer.Option(help="model directory to serve")],
    port: Annotated[int, typer.Option(min=0, max=65535, help="port on 127.0.0.1 (0: any free port)")] = 3000,
    host: Annotated[str, typer.Option(help="address to bind; keep it on loopback")] = "127.0.0.1",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="print each request")] = False,
) -> None:
    """Serve a model through the real inference handler behind a local API Gateway (no Docker)."""
    from lambdaforge.cli.target import inference_invoker, local_gateway

    invoker = inference_invoker(model, verbose=verbose)
    try:
        gateway = local_gateway(invoker, host=host, port=port, access_log=console.print if verbose else None)
    except OSError as exc:
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror}", hint="try --port 0") from exc
    console.print(f"serving [bold]{model}[/bold] at [bold]{gateway.url}[/bold]  (docs: {gateway.url}/docs)")
    console.print(sample_curl(gateway.url, model))
    try:
        gateway.serve_forever()
    except KeyboardInterrupt:
        console.print("stopped")
    finally:
        gateway.stop()


@app.command()
def package(
    model: Annotated[Path, typer.Option(help="model directory to bake into the image")],
    out: Annotated[Path, typer.Option(help="where to write the Docker build context")] = Path("build/inference"),
    function: Annotated[str, typer.Option(help="which container function")] = "inference",
    budget_mb: Annotated[float, typer.Option(help="payload budget in MiB")] = 160.0,
    force: Annotated[bool, typer.Option(help="replace a non-empty --out")] = False,
) -> None:
    """Assemble the image's build context and report its runtime payload against a budget."""
    import shutil

    from lambdaforge.bundle.build import assemble_context
    from lambdaforge.bundle.measure import payload
    from lambdaforge.project import project_root

    root = project_root()
    if out.exists() and any(out.iterdir()):
        if not force:
            raise CliError(f"{out}: output directory is not empty", hint="pass --force to replace it")
        shutil.rmtree(out)
    assemble_context(root, function, model, out)
    with console.status("measuring the runtime payload (pip install for Lambda's Python 3.12, slimmed)"):
        report = payload(root, function, model, Path.home() / ".cache" / "lambdaforge", budget_mb)
    table = Table(title=f"runtime payload of {function}", title_justify="left")
    table.add_column("part")
    table.add_column("MiB", justify="right")
    for part, size in (("installed dependencies", report.deps_bytes), ("lambdaforge + handler", report.code_bytes),
                       ("model", report.model_bytes), ("total", report.total_bytes),
                       ("budget", report.budget_bytes)):
        table.add_row(part, f"{size / 2**20:.1f}")
    console.print(table)
    console.print(f"build context: {out}  (docker build -t lambdaforge-{function} {out})")
    if not report.within_budget:
        total_mib = report.total_bytes / 2**20
        raise CommandFailedError(f"payload {total_mib:.1f} MiB exceeds the budget of {budget_mb:g} MiB")
