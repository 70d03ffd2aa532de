"""Model toolchain commands: train, export, quantize, bench, data."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from lambdaforge.cli.app import app, console
from lambdaforge.cli.errors import CliError, CommandFailedError

if TYPE_CHECKING:
    from lambdaforge.artifact import ModelDir
    from lambdaforge.recipes.base import Recipe

# The SageMaker metrics the progress bar shows, and the one that says model.onnx is exported.
_SHOWN = ("train:loss", "test:metric")
_EXPORTED = "export:parity_max_abs_diff"


def _empty_or_force(path: Path, force: bool) -> None:
    if path.exists() and any(path.iterdir()):
        if not force:
            raise CliError(f"{path}: output directory is not empty", hint="pass --force to replace it")
        shutil.rmtree(path)


def _summary(title: str, rows: list[tuple[str, str]]) -> None:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


@app.command()
def data(
    recipe: Annotated[str, typer.Argument(help="recipe whose shipped dataset to write")],
    out: Annotated[Path, typer.Option(help="folder to write into")] = Path("data"),
) -> None:
    """Write the dataset that ships with a recipe (digits from scikit-learn, text from the package)."""
    from lambdaforge.recipes import get_recipe

    path = get_recipe(recipe).write_sample_data(out)
    console.print(f"wrote {path}")


def _progress_reader(progress: Progress, task: TaskID, recipe: str, *, verbose: bool,
                     tail: list[str]) -> Callable[[str], None]:
    """What the progress bar takes from each log line, read by the harness's own metric-line protocol."""
    from lambdaforge.training.metrics import STEP, TOTAL_STEPS, parse_line, parse_progress, printed_key

    shown: dict[str, float] = {}

    def on_line(line: str) -> None:
        tail.append(line)
        del tail[:-40]
        if verbose:
            progress.console.print(line, markup=False)
        steps = parse_progress(line)
        if TOTAL_STEPS in steps:
            progress.update(task, total=steps[TOTAL_STEPS])
        if STEP in steps:
            progress.update(task, completed=steps[STEP])
        found = parse_line(line)
        shown.update({name: value for name, value in found.items() if name in _SHOWN})
        if shown:
            desc = " ".join(f"{printed_key(k)}={v:.4f}" for k, v in shown.items())
            progress.update(task, description=f"training {recipe} {desc}")
        if _EXPORTED in found and "test:metric" not in found:
            progress.update(task, description=f"exported ONNX {recipe}")

    return on_line


def _run_training(rec: Recipe, recipe: str, data_path: Path | None, out: Path, hps: dict[str, str], *,
                  verbose: bool) -> None:
    """Train in a temporary /opt/ml tree and copy its model directory to `out`."""
    from lambdaforge.training.runner import JobTree, run_entry_point

    with tempfile.TemporaryDirectory(prefix="lambdaforge-train-") as tmp_name:
        tmp = Path(tmp_name)
        if data_path is None:
            data_path = rec.write_sample_data(tmp / "sample-data")
            console.print(f"no --data given: using the dataset that ships with {recipe!r} ({data_path.name})")
        elif not data_path.exists():
            raise CliError(f"{data_path}: data path does not exist")
        tree = JobTree(tmp / "opt" / "ml")
        tree.prepare({"train": data_path}, {"recipe": recipe, **hps})
        job = f"local-{recipe}-{time.strftime('%Y%m%d-%H%M%S')}"
        tail: list[str] = []
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, transient=not verbose) as progress:
            task = progress.add_task(f"training {recipe}", total=None)
            on_line = _progress_reader(progress, task, recipe, verbose=verbose, tail=tail)
            code, reason = run_entry_point(tree, {"train": data_path}, job, on_line=on_line)
        if code != 0:
            if not verbose:
                console.print("\n".join(tail[-15:]), markup=False)
            raise CommandFailedError(f"training failed (exit {code}): {reason or 'no reason written'}")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(tree.model_dir, out, dirs_exist_ok=True)


def _trained_summary(recipe: str, md: ModelDir) -> None:
    m = md.manifest
    metric = m.primary_metric
    _summary(f"trained {recipe}", [
        ("model directory", str(md.path)),
        (f"test {metric} (ONNX fp32)", f"{m.metrics[metric]:.4f}"),
        (f"test {metric} (torch)", f"{m.metrics[f'torch_{metric}']:.4f}"),
        ("parity max |diff|", f"{m.metrics['parity_max_abs_diff']:.3g}"),
        ("steps / seconds", f"{m.training.steps} / {m.training.seconds:.1f}"),
        ("model.onnx", f"{md.model_path.stat().st_size / 1e6:.2f} MB"),
        ("dataset version", m.training.dataset_version),
    ])


def train_local(recipe: str, data_path: Path | None, out: Path, hps: dict[str, str], *, force: bool,
                verbose: bool) -> Path:
    """Run `python -m lambdaforge.training` in a temporary /opt/ml tree, with a progress bar."""
    from lambdaforge.artifact import open_model_dir
    from lambdaforge.recipes import get_recipe

    rec = get_recipe(recipe)
    _empty_or_force(out, force)
    _run_training(rec, recipe, data_path, out, hps, verbose=verbose)
    _trained_summary(recipe, open_model_dir(out))  # the copy is verified on its way in
    return out


@app.command()
def train(
    recipe: Annotated[str, typer.Option(help="recipe name or package.module:Class")] = "digits",
    data_path: Annotated[Path | None, typer.Option("--data", help="data file or folder (default: shipped data)")]
    = None,
    out: Annotated[Path | None, typer.Option(help="where to write the model directory")] = None,
    hp: Annotated[list[str] | None, typer.Option(help="hyperparameter key=value (repeatable)")] = None,
    force: Annotated[bool, typer.Option(help="replace a non-empty --out")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="print every training log line")] = False,
    cloud: Annotated[bool, typer.Option("--cloud", help="run as a SageMaker training job instead")] = False,
    instance_type: Annotated[str, typer.Option(help="--cloud: instance type")] = "ml.g5.xlarge",
    instance_count: Annotated[int, typer.Option(min=1, help="--cloud: instances")] = 1,
    spot: Annotated[bool, typer.Option("--spot/--on-demand", help="--cloud: managed spot training")] = True,
    role: Annotated[str | None, typer.Option(help="--cloud: SageMaker role ARN (default: the stack's)")] = None,
    bucket: Annotated[str | None, typer.Option(help="--cloud: bucket for outputs (default: the stack's)")] = None,
    training_image: Annotated[str | None, typer.Option(help="--cloud: image URI (default: looked up)")] = None,
    stack: Annotated[str | None, typer.Option(help="--cloud: stack whose role and bucket to use")] = None,
    region: Annotated[str | None, typer.Option(help="--cloud: AWS region")] = None,
    download: Annotated[Path | None, typer.Option(help="--cloud: download the model directory here")] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="--cloud: follow the job to the end")] = True,
) -> None:
    """Train a recipe: locally through the SageMaker entry point, or with --cloud as a SageMaker job."""
    from lambdaforge.recipes.hparams import parse_cli_pairs

    hps = parse_cli_pairs(hp or [])
    if cloud:
        from lambdaforge.cli.cloud_cmds import cloud_train

        if data_path is None:
            raise CliError("--cloud needs --data (an s3:// URI or a local file to upload)")
        cloud_train(recipe, str(data_path), instance_type=instance_type, instance_count=instance_count, spot=spot,
                    role=role, bucket=bucket, stack=stack, region=region, training_image=training_image, hps=hps,
                    download=download, wait=wait)
        return
    train_local(recipe, data_path, out or Path("runs") / recipe / "model", hps, force=force, verbose=verbose)


@app.command()
def export(
    model: Annotated[Path, typer.Option(help="trained model directory (with model.safetensors)")],
    out: Annotated[Path, typer.Option(help="new model directory to write")],
    opset: Annotated[int | None, typer.Option(help="ONNX opset (default: 18; 17 for an encoder, which the "
                                                   "TorchScript exporter writes for onnxruntime's fusions)")] = None,
    force: Annotated[bool, typer.Option(help="replace a non-empty --out")] = False,
) -> None:
    """Re-export a trained model to ONNX from its weights, with the parity check."""
    from lambdaforge.artifact import open_model_dir
    from lambdaforge.export.onnx_export import onnx_opset
    from lambdaforge.export.reexport import reexport

    _empty_or_force(out, force)
    done = reexport(open_model_dir(model), out, opset=opset)
    parity = done.parity
    _summary("exported", [("model directory", str(out)), ("opset", str(onnx_opset(done.model_dir.model_path))),
                          ("parity max |diff|", f"{parity.max_abs_diff:.3g}"),
                          ("parity shapes", ", ".join(str(s) for s in parity.shapes)),
                          ("top-1 agreement", f"{parity.argmax_agreement:.4f}")])


@app.command()
def quantize(
    model: Annotated[Path, typer.Option(help="model directory with an fp32 model.onnx")],
    out: Annotated[Path, typer.Option(help="new model directory to write")],
    mode: Annotated[str, typer.Option(help="auto, dynamic or static")] = "auto",
    max_drop: Annotated[float | None, typer.Option(help="largest allowed metric drop (0.005 = 0.5 points)")]
    = None,
    min_metric: Annotated[float | None, typer.Option(help="lowest allowed metric of the shipped model")] = None,
    min_agreement: Annotated[float | None, typer.Option(
        help="least top-1 agreement with fp32 on the held-out rows (0.98 = 98 %)")] = None,
    preset_name: Annotated[str | None, typer.Option("--preset", help="a named config: auto, transformer, cnn, strict")]
    = None,
    force: Annotated[bool, typer.Option(help="replace a non-empty --out")] = False,
) -> None:
    """Quantize to INT8 behind the accuracy gate; writes the report either way."""
    from lambdaforge.artifact import open_model_dir
    from lambdaforge.quantize import from_mode, preset, quantize_model_dir

    bounds = {"max_drop": max_drop, "min_metric": min_metric, "min_agreement": min_agreement}
    cfg = preset(preset_name).with_gate(**bounds) if preset_name else from_mode(mode, **bounds)
    _empty_or_force(out, force)
    source = open_model_dir(model)  # verified once; the stage takes it as it is
    with Progress(TextColumn("[bold]{task.description}"), TimeElapsedColumn(), console=console,
                  transient=True) as progress:
        task = progress.add_task("quantizing", total=None)
        report = quantize_model_dir(source, out, cfg,
                                    progress=lambda msg: progress.update(task, description=msg)).report
    table = Table(title=f"quantization candidates ({report.recipe})", title_justify="left")
    for col in ("candidate", "scheme", "size MB", "p50 ms [interval]", report.primary_metric, "agreement",
                "drop (pts)", "passed"):
        table.add_column(col)
    for c in [report.fp32, *report.candidates]:
        lat = f"{c.latency_ms_p50:.2f}" if c.latency_ms_p50 is not None else "-"
        if c.latency_ms_lo is not None and c.latency_ms_hi is not None:
            lat += f" [{c.latency_ms_lo:.2f}, {c.latency_ms_hi:.2f}]"
        table.add_row(c.name, c.scheme or "-", f"{(c.size_bytes or 0) / 1e6:.2f}", lat,
                      f"{c.metric:.4f}" if c.metric is not None else "-",
                      f"{c.agreement:.4f}" if c.agreement is not None else "-",
                      f"{c.drop * 100:.2f}" if c.drop is not None else "-",
                      "yes" if c.passed else f"no: {c.reason}")
    console.print(table)
    console.print(f"host CPU class {report.host_isa}; report: {out / 'quantization_report.md'}")
    if not report.gate_passed:
        raise CommandFailedError(f"accuracy gate failed: {report.gate_reason}")
    console.print(f"[green]chosen {report.chosen}[/green]: {report.gate_reason}")


@app.command()
def bench(
    model: Annotated[Path, typer.Option(help="model directory to measure")],
    runs: Annotated[int, typer.Option(min=5, help="timed runs per batch size")] = 100,
    batch: Annotated[list[int] | None, typer.Option(help="batch sizes (repeatable)")] = None,
    threads: Annotated[int, typer.Option(min=1, help="onnxruntime intra-op threads")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Warm latency of a model directory's ONNX model on its held-out samples."""
    import numpy as np

    from lambdaforge.artifact import open_model_dir
    from lambdaforge.onnxsession import open_session
    from lambdaforge.quantize import QuantizationError
    from lambdaforge.timing import measure_ms

    md = open_model_dir(model)
    sess = open_session(md.model_path, error=QuantizationError, threads=threads, what="this model")
    with np.load(md.file(md.manifest.eval_file), allow_pickle=False) as npz:
        samples = {s.name: npz[s.name] for s in md.manifest.inputs}
    result: dict[str, dict[str, float]] = {}
    for b in batch or [1, 8]:
        feed = {k: np.resize(v, (b, *v.shape[1:])) for k, v in samples.items()}
        result[f"b{b}"] = measure_ms(partial(sess.run, None, feed), runs=runs)
    if as_json:
        console.print_json(json.dumps(result))
        return
    table = Table(title=f"{md.manifest.recipe}: {md.manifest.model_file}, {threads} thread(s)", title_justify="left")
    for col in ("batch", "p50 ms", "p99 ms", "mean ms"):
        table.add_column(col)
    for key, stats in result.items():
        table.add_row(key[1:], f"{stats['p50']:.3f}", f"{stats['p99']:.3f}", f"{stats['mean']:.3f}")
    console.print(table)
