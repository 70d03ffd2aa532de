"""Quantize a verified model directory into a new, servable one, behind the accuracy gate.

The steps are separate functions: measure the fp32 model, build and measure the candidates,
choose one, write the new directory.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lambdaforge.artifact.builder import ModelDirBuilder, carried_files
from lambdaforge.artifact.manifest import QuantizationInfo
from lambdaforge.artifact.modeldir import ModelDir
from lambdaforge.onnxsession import open_session, predict_batched
from lambdaforge.quantize import engine
from lambdaforge.quantize.config import DynamicQuantConfig, QuantizeConfig, StaticQuantConfig
from lambdaforge.quantize.errors import QuantizationError
from lambdaforge.quantize.report import CandidateResult, QuantizationReport
from lambdaforge.timing import batch1_p50_ms

Progress = Callable[[str], None]
Arrays = dict[str, np.ndarray]
SERVED_NAME = "model.onnx"


@dataclass(frozen=True)
class Quantized:
    """What quantization made: the report always, the model directory only when the gate passed."""

    report: QuantizationReport
    model_dir: ModelDir | None


@dataclass(frozen=True)
class _Plan:
    name: str
    mode: str
    cfg: DynamicQuantConfig | StaticQuantConfig


@dataclass(frozen=True)
class _Bench:
    """What every candidate is built from and measured against."""

    fp32_path: Path
    work: Path  # where candidate files are written
    metric_name: str
    inputs: Arrays
    labels: np.ndarray
    calibration: Arrays
    cfg: QuantizeConfig
    fp32_pred: np.ndarray
    fp32_metric: float


@dataclass(frozen=True)
class _Choice:
    chosen: str
    file: Path | None
    fallback: bool
    gate_passed: bool
    gate_reason: str


def _load_samples(md: ModelDir, name: str | None, what: str) -> tuple[Arrays, np.ndarray]:
    if not name:
        raise QuantizationError(f"{md.path}: the manifest names no {what} file")
    path = md.file(name)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise QuantizationError(f"{path}: cannot read {what} samples ({exc})") from exc
    labels = arrays.pop("labels", None)
    names = {s.name for s in md.manifest.inputs}
    if labels is None or set(arrays) != names:
        raise QuantizationError(f"{path}: expected arrays {sorted(names)} and 'labels', found {sorted(arrays)}")
    return arrays, labels


def _plans(cfg: QuantizeConfig, exclude: tuple[str, ...] = ()) -> list[_Plan]:
    suffix = "-exclude" if exclude else ""
    dyn = dataclasses.replace(cfg.dynamic, nodes_to_exclude=cfg.dynamic.nodes_to_exclude + exclude)
    sta = dataclasses.replace(cfg.static, nodes_to_exclude=cfg.static.nodes_to_exclude + exclude)
    plans: list[_Plan] = []
    if cfg.mode in ("dynamic", "auto"):
        plans.append(_Plan(f"dynamic{suffix}", "dynamic", dyn))
        if cfg.mode == "auto" and not dyn.fuse:
            plans.append(_Plan(f"dynamic-fused{suffix}", "dynamic", dataclasses.replace(dyn, fuse=True)))
    if cfg.mode in ("static", "auto"):
        plans.append(_Plan(f"static{suffix}", "static", sta))
    return plans


def _options(cfg: DynamicQuantConfig | StaticQuantConfig) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items() if v != ()}


def _metric(name: str, logits: np.ndarray, labels: np.ndarray) -> float:
    """The primary metric of a classification manifest; only accuracy is defined for now."""
    if name != "accuracy":
        raise QuantizationError(f"primary metric {name!r} is not supported by the gate (accuracy is)")
    return float((logits.argmax(-1) == labels).mean())


def _run(path: Path, inputs: Arrays, latency_runs: int) -> tuple[np.ndarray, float]:
    """Logits on the held-out inputs and the batch-1 p50 latency of one model file."""
    sess = open_session(path, error=QuantizationError, what="this model")
    return predict_batched(sess, inputs), batch1_p50_ms(sess, inputs, latency_runs)


def _measure_fp32(md: ModelDir, cfg: QuantizeConfig, work: Path) -> tuple[_Bench, CandidateResult]:
    manifest = md.manifest
    inputs, labels = _load_samples(md, manifest.eval_file, "evaluation")
    calibration = _load_samples(md, manifest.calibration_file, "calibration")[0] \
        if cfg.mode in ("static", "auto") else {}
    logits, latency = _run(md.model_path, inputs, cfg.latency_runs)
    fp32_metric = _metric(manifest.primary_metric, logits, labels)
    bench = _Bench(fp32_path=md.model_path, work=work, metric_name=manifest.primary_metric, inputs=inputs,
                   labels=labels, calibration=calibration, cfg=cfg, fp32_pred=logits.argmax(-1),
                   fp32_metric=fp32_metric)
    fp32 = CandidateResult(name="fp32", mode="none", size_bytes=md.model_path.stat().st_size, latency_ms_p50=latency,
                           metric=fp32_metric, agreement=1.0, drop=0.0, passed=True, reason="reference")
    return bench, fp32


def _build(plan: _Plan, bench: _Bench) -> Path:
    target = bench.work / f"{plan.name}.onnx"
    if isinstance(plan.cfg, DynamicQuantConfig):
        source = engine.fuse_transformer(bench.fp32_path, bench.work / f"{plan.name}.fused.onnx") \
            if plan.cfg.fuse else bench.fp32_path
        return engine.quantize_dynamic(source, target, plan.cfg)
    return engine.quantize_static(bench.fp32_path, target, plan.cfg, bench.calibration)


def _candidate(plan: _Plan, bench: _Bench) -> tuple[CandidateResult, Path | None]:
    """Build and measure one candidate; a candidate that fails is reported, not raised."""
    result = CandidateResult(name=plan.name, mode=plan.mode, options=_options(plan.cfg))
    try:
        target = _build(plan, bench)
        logits, latency = _run(target, bench.inputs, bench.cfg.latency_runs)
        metric = _metric(bench.metric_name, logits, bench.labels)
        passed, reason = bench.cfg.gate.check(bench.fp32_metric, metric)
    except Exception as exc:
        return result.model_copy(update={"passed": False, "reason": f"failed: {type(exc).__name__}: {exc}"[:300]}), \
            None
    return result.model_copy(update={
        "size_bytes": target.stat().st_size, "latency_ms_p50": latency, "metric": metric,
        "agreement": float((logits.argmax(-1) == bench.fp32_pred).mean()), "drop": bench.fp32_metric - metric,
        "passed": passed, "reason": reason,
    }), target


def _run_plans(plans: list[_Plan], bench: _Bench, say: Progress) -> list[tuple[CandidateResult, Path | None]]:
    outcomes = []
    for plan in plans:
        say(f"candidate {plan.name}")
        outcomes.append(_candidate(plan, bench))
    return outcomes


def _candidates(bench: _Bench, say: Progress) -> tuple[list[CandidateResult], dict[str, Path], bool]:
    """Every planned candidate; in auto mode, when none passes, again without the sensitive nodes."""
    cfg = bench.cfg
    outcomes = _run_plans(_plans(cfg), bench, say)
    fallback = False
    if cfg.mode == "auto" and not any(r.passed for r, _ in outcomes):
        exclude = engine.sensitive_nodes(bench.fp32_path)
        if exclude:
            say(f"no candidate passed; retrying without the sensitive nodes {', '.join(exclude)}")
            fallback = True
            outcomes += _run_plans(_plans(cfg, exclude), bench, say)
    files = {r.name: path for r, path in outcomes if path is not None}
    return [r for r, _ in outcomes], files, fallback


def _choose(bench: _Bench, results: list[CandidateResult], files: dict[str, Path], fallback: bool) -> _Choice:
    """The fastest passing candidate (then the smallest); else fp32 if allowed; else none."""
    cfg = bench.cfg
    passing = [r for r in results if r.passed]
    if passing:
        best = min(passing, key=lambda r: (r.latency_ms_p50 or float("inf"), r.size_bytes or 0))
        return _Choice(best.name, files[best.name], fallback, True, f"{best.name}: {best.reason}")
    if cfg.mode == "auto" and cfg.fp32_fallback:
        passed, reason = cfg.gate.check(bench.fp32_metric, bench.fp32_metric)
        return _Choice("fp32", bench.fp32_path, True, passed, f"no INT8 candidate passed; shipping fp32 ({reason})")
    details = "; ".join(f"{r.name}: {r.reason}" for r in results)
    return _Choice("none", None, fallback, False, f"no candidate passed the accuracy gate: {details}")


def _write(md: ModelDir, builder: ModelDirBuilder, report: QuantizationReport, chosen_file: Path) -> ModelDir:
    manifest = md.manifest
    builder.add(SERVED_NAME, chosen_file)
    builder.carry(md, carried_files(manifest))
    chosen = report.chosen_result
    metrics = {**manifest.metrics, manifest.primary_metric: float(chosen.metric or 0.0),
               f"fp32_{manifest.primary_metric}": report.fp32.metric or 0.0,
               "int8_agreement": float(chosen.agreement or 0.0)}
    return builder.finish(manifest.model_copy(update={
        "model_file": SERVED_NAME, "weights_file": None, "metrics": metrics,
        "quantization": QuantizationInfo(mode=report.requested_mode, chosen=report.chosen, fallback=report.fallback,
                                         source_sha256=report.source_sha256),
    }))


def quantize_model_dir(md: ModelDir, out: Path | str, cfg: QuantizeConfig | None = None, *,
                       progress: Progress | None = None) -> Quantized:
    """Try the candidates `cfg` asks for on a verified model directory, gate them, write the chosen one to `out`.

    `out` must not exist (or be empty): quantization writes new directories, never in place.
    The report is written even when the gate fails; the model directory only when it passes.
    """
    cfg = cfg or QuantizeConfig()
    say = progress or (lambda _msg: None)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise QuantizationError(f"{out}: output directory is not empty; quantization never overwrites")
    manifest = md.manifest
    with tempfile.TemporaryDirectory(prefix="lf-quant-") as tmp_name:
        say("measuring the fp32 model")
        bench, fp32 = _measure_fp32(md, cfg, Path(tmp_name))
        results, files, fallback = _candidates(bench, say)
        choice = _choose(bench, results, files, fallback)
        report = QuantizationReport(
            recipe=manifest.recipe, primary_metric=manifest.primary_metric, requested_mode=cfg.mode,
            gate={"max_drop": cfg.gate.max_drop, "min_metric": cfg.gate.min_metric},
            source_sha256=manifest.files[manifest.model_file], eval_rows=len(bench.labels), fp32=fp32,
            candidates=results, chosen=choice.chosen, fallback=choice.fallback, gate_passed=choice.gate_passed,
            gate_reason=choice.gate_reason,
        )
        builder = ModelDirBuilder(out)
        write_report(report, out)
        if not choice.gate_passed or choice.file is None:
            return Quantized(report=report, model_dir=None)
        say(f"writing {out} with {choice.chosen}")
        return Quantized(report=report, model_dir=_write(md, builder, report, choice.file))


def write_report(report: QuantizationReport, out: Path) -> None:
    (out / "quantization_report.json").write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    (out / "quantization_report.md").write_text(report.to_markdown(), encoding="utf-8")
