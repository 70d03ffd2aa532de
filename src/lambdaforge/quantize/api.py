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
from lambdaforge.quantize.champion import (
    Holdout,
    LiveGate,
    LiveScore,
    contract_refusal,
    incomparable,
    score_live,
    to_candidate_labels,
)
from lambdaforge.quantize.config import DynamicQuantConfig, QuantizeConfig, StaticQuantConfig
from lambdaforge.quantize.errors import QuantizationError
from lambdaforge.quantize.report import CandidateResult, LiveComparison, LiveStatus, QuantizationReport
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
class _Scored:
    """A model on one row set: its primary metric and top-1 predictions."""

    metric: float
    pred: np.ndarray


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
    live: LiveScore | None = None  # None: no live model, or not comparable
    holdout: Holdout | None = None  # the live model's own held-out rows (with `live`, when comparable)
    fp32_holdout: _Scored | None = None  # the fp32 model on them


@dataclass(frozen=True)
class _Verdict:
    passed: bool
    reason: str
    live_delta: float | None = None
    live_agreement: float | None = None
    live_rows_metric: float | None = None  # on the live model's held-out rows
    live_rows_delta: float | None = None
    live_rows_agreement: float | None = None

    def fields(self) -> dict[str, Any]:
        """What a CandidateResult records of it."""
        return dataclasses.asdict(self)


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


def _run(path: Path, inputs: Arrays, latency_runs: int, holdout: Holdout | None = None) -> tuple[
        np.ndarray, float, np.ndarray | None]:
    """Logits on the held-out inputs, the batch-1 p50 latency of one model file, and its logits on the
    live model's held-out rows (None without them)."""
    sess = open_session(path, error=QuantizationError, what="this model")
    logits, latency = predict_batched(sess, inputs), batch1_p50_ms(sess, inputs, latency_runs)
    return logits, latency, predict_batched(sess, holdout.inputs) if holdout is not None else None


def _on_holdout(bench: _Bench, logits: np.ndarray | None) -> _Scored | None:
    if bench.holdout is None or logits is None:
        return None
    return _Scored(_metric(bench.metric_name, logits, bench.holdout.labels), logits.argmax(-1))


def _judge(bench: _Bench, metric: float, pred: np.ndarray, on_holdout: _Scored | None) -> _Verdict:
    """One gate for every model that could ship: against fp32 and the floor, then against live on the
    candidate's rows, then against live on the live model's own rows (the uploader did not choose those)."""
    gate = bench.cfg.gate
    passed, reason = gate.check(bench.fp32_metric, metric)
    live, holdout = bench.live, bench.holdout
    if live is None:
        return _Verdict(passed, reason)
    if passed:
        passed, against_live = gate.check_live(live.metric, metric, live.name,
                                               rows=f"the candidate's {len(bench.labels)} held-out rows")
        reason = against_live if not passed else f"{reason}; {against_live}"
    if holdout is None or on_holdout is None:
        return _Verdict(passed, reason, live.delta(metric), live.agreement(pred))
    if passed:
        passed, trusted = gate.check_live(holdout.live.metric, on_holdout.metric, live.name, rows=holdout.rows)
        reason = trusted if not passed else f"{reason}; {trusted}"
    return _Verdict(passed, reason, live.delta(metric), live.agreement(pred), on_holdout.metric,
                    holdout.live.delta(on_holdout.metric), holdout.live.agreement(on_holdout.pred))


@dataclass(frozen=True)
class _LiveSide:
    """What the live model adds to the bench, and what the report says about it."""

    score: LiveScore | None
    holdout: Holdout | None
    status: LiveStatus
    note: str
    refusal: str | None = None  # set: the gate refuses every candidate for this reason


def _score_live(md: ModelDir, gate: LiveGate | None, inputs: Arrays, labels: np.ndarray) -> _LiveSide:
    """The live model's scores on the candidate's rows and on its own (None when there is nothing to compare
    with), the status and a note why; a changed contract is refused unless the gate allows it."""
    if gate is None:
        return _LiveSide(None, None, "not-checked", "no live model was given: only the floor applies")
    live = gate.live
    if live is None:
        return _LiveSide(None, None, "no-live-model", "no live model yet (first run): only the floor applies")
    why = incomparable(md.manifest, live.model_dir.manifest)
    if why is not None:
        if gate.allow_contract_change:
            return _LiveSide(None, None, "not-comparable", f"not comparable with the live model {live.name}: "
                                                           f"{why}; the contract change is allowed "
                                                           "(ALLOW_CONTRACT_CHANGE): only the floor applies")
        refusal = contract_refusal(live.name, why)
        return _LiveSide(None, None, "not-comparable", refusal, refusal)
    score = score_live(live, md.manifest, inputs, labels)
    live_md = live.model_dir
    live_inputs, live_labels = _load_samples(live_md, live_md.manifest.eval_file,
                                             f"the live model {live.name}'s evaluation")
    holdout_labels = to_candidate_labels(live, md.manifest, live_labels)
    rows = f"the live model {live.name}'s {len(holdout_labels)} held-out rows"
    holdout = Holdout(inputs=live_inputs, labels=holdout_labels,
                      live=score_live(live, md.manifest, live_inputs, holdout_labels, rows=rows))
    return _LiveSide(score, holdout, "compared",
                     f"compared with the live model {score.name} on the candidate's {len(labels)} held-out rows "
                     f"and on {rows}")


def _measure_fp32(md: ModelDir, cfg: QuantizeConfig, work: Path, samples: tuple[Arrays, np.ndarray],
                  side: _LiveSide) -> tuple[_Bench, CandidateResult]:
    manifest = md.manifest
    inputs, labels = samples
    calibration = _load_samples(md, manifest.calibration_file, "calibration")[0] \
        if cfg.mode in ("static", "auto") else {}
    logits, latency, holdout_logits = _run(md.model_path, inputs, cfg.latency_runs, side.holdout)
    fp32_metric = _metric(manifest.primary_metric, logits, labels)
    bench = _Bench(fp32_path=md.model_path, work=work, metric_name=manifest.primary_metric, inputs=inputs,
                   labels=labels, calibration=calibration, cfg=cfg, fp32_pred=logits.argmax(-1),
                   fp32_metric=fp32_metric, live=side.score, holdout=side.holdout)
    bench = dataclasses.replace(bench, fp32_holdout=_on_holdout(bench, holdout_logits))
    verdict = _judge(bench, fp32_metric, bench.fp32_pred, bench.fp32_holdout)
    fp32 = CandidateResult(name="fp32", mode="none", size_bytes=md.model_path.stat().st_size, latency_ms_p50=latency,
                           metric=fp32_metric, agreement=1.0, drop=0.0,
                           **(verdict.fields() | {"passed": True, "reason": "reference"}))
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
        logits, latency, holdout_logits = _run(target, bench.inputs, bench.cfg.latency_runs, bench.holdout)
        metric = _metric(bench.metric_name, logits, bench.labels)
        verdict = _judge(bench, metric, logits.argmax(-1), _on_holdout(bench, holdout_logits))
    except Exception as exc:
        return result.model_copy(update={"passed": False, "reason": f"failed: {type(exc).__name__}: {exc}"[:300]}), \
            None
    return result.model_copy(update={
        "size_bytes": target.stat().st_size, "latency_ms_p50": latency, "metric": metric,
        "agreement": float((logits.argmax(-1) == bench.fp32_pred).mean()), "drop": bench.fp32_metric - metric,
        **verdict.fields(),
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
    """The fastest passing candidate (then the smallest); else fp32 if allowed and it passes the same gate
    (floor and live model); else none."""
    cfg = bench.cfg
    passing = [r for r in results if r.passed]
    if passing:
        best = min(passing, key=lambda r: (r.latency_ms_p50 or float("inf"), r.size_bytes or 0))
        return _Choice(best.name, files[best.name], fallback, True, f"{best.name}: {best.reason}")
    if cfg.mode == "auto" and cfg.fp32_fallback:
        verdict = _judge(bench, bench.fp32_metric, bench.fp32_pred, bench.fp32_holdout)
        if verdict.passed:
            return _Choice("fp32", bench.fp32_path, True, True, f"no INT8 candidate passed; shipping fp32 "
                                                                 f"({verdict.reason})")
        return _Choice("none", None, True, False, f"no INT8 candidate passed and the fp32 fallback fails the gate "
                                                   f"too: {verdict.reason}")
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


def _comparison(bench: _Bench, fp32: CandidateResult, results: list[CandidateResult], choice: _Choice,
                side: _LiveSide, gate: LiveGate | None) -> LiveComparison:
    shown = next((r for r in results if r.name == choice.chosen), fp32)  # the shipped model, else the trained one
    live, holdout = bench.live, bench.holdout
    return LiveComparison(status=side.status, note=side.note, floor=bench.cfg.gate.min_metric,
                          floor_source=gate.floor_source if gate else "", live_version=live.name if live else None,
                          live_metric=live.metric if live else None, candidate=shown.name,
                          candidate_metric=shown.metric, agreement=shown.live_agreement,
                          candidate_rows=len(bench.labels), live_rows=len(holdout.labels) if holdout else None,
                          live_metric_on_live_rows=holdout.live.metric if holdout else None,
                          candidate_metric_on_live_rows=shown.live_rows_metric,
                          agreement_on_live_rows=shown.live_rows_agreement)


def quantize_model_dir(md: ModelDir, out: Path | str, cfg: QuantizeConfig | None = None, *,
                       progress: Progress | None = None, live_gate: LiveGate | None = None) -> Quantized:
    """Try the candidates `cfg` asks for on a verified model directory, gate them, write the chosen one to `out`.

    `out` must not exist (or be empty): quantization writes new directories, never in place.
    The report is written even when the gate fails; the model directory only when it passes.
    With `live_gate` (the pipeline), every candidate and the fp32 fallback must also lose at most
    `max_drop` against the live model, both on the candidate's held-out rows and on the live model's
    own (trusted) ones. A candidate that is not comparable with live (a new contract) is refused
    unless `live_gate.allow_contract_change`; then only the floor applies.
    """
    cfg = cfg or QuantizeConfig()
    say = progress or (lambda _msg: None)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise QuantizationError(f"{out}: output directory is not empty; quantization never overwrites")
    manifest = md.manifest
    with tempfile.TemporaryDirectory(prefix="lf-quant-") as tmp_name:
        samples = _load_samples(md, manifest.eval_file, "evaluation")
        if live_gate and live_gate.live:
            say(f"scoring the live model {live_gate.live.name} on the held-out rows")
        side = _score_live(md, live_gate, *samples)
        say("measuring the fp32 model")
        bench, fp32 = _measure_fp32(md, cfg, Path(tmp_name), samples, side)
        if side.refusal is not None:  # a new contract, not allowed: nothing is worth building
            say(f"refused: {side.refusal}")
            results: list[CandidateResult] = []
            choice = _Choice("none", None, False, False, side.refusal)
        else:
            results, files, fallback = _candidates(bench, say)
            choice = _choose(bench, results, files, fallback)
        report = QuantizationReport(
            recipe=manifest.recipe, primary_metric=manifest.primary_metric, requested_mode=cfg.mode,
            gate={"max_drop": cfg.gate.max_drop, "min_metric": cfg.gate.min_metric},
            source_sha256=manifest.files[manifest.model_file], eval_rows=len(bench.labels), fp32=fp32,
            candidates=results, chosen=choice.chosen, fallback=choice.fallback, gate_passed=choice.gate_passed,
            gate_reason=choice.gate_reason,
            live=_comparison(bench, fp32, results, choice, side, live_gate),
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
