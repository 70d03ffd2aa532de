"""Quantize a verified model directory into a new, servable one, behind the accuracy gate.

The steps are separate functions: measure the fp32 model, build and measure the candidates,
choose one, write the new directory.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
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
from lambdaforge.quantize.config import DynamicQuantConfig, QuantizeConfig, StaticQuantConfig, scheme
from lambdaforge.quantize.errors import QuantizationError
from lambdaforge.quantize.report import CandidateResult, LiveComparison, LiveStatus, QuantizationReport
from lambdaforge.timing import interleaved_samples, median_interval, summarize

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
    mode: str  # dynamic, static, or fused (the fp32 graph after onnxruntime's transformer fusions)
    cfg: DynamicQuantConfig | StaticQuantConfig | None


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
    fp32_logits: np.ndarray | None = None
    geometry: dict[str, Any] | None = None  # the encoder's, when the export marked it fusable
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


def _plans(cfg: QuantizeConfig, geometry: dict[str, Any] | None, exclude: tuple[str, ...] = ()) -> list[_Plan]:
    """The candidates of a mode. Auto adds the U8U8 variant (exact on every CPU, whatever measures faster)
    and, for an encoder the export marked fusable, the fused fp32 graph and its INT8 form."""
    suffix = "-exclude" if exclude else ""
    dyn = dataclasses.replace(cfg.dynamic, nodes_to_exclude=cfg.dynamic.nodes_to_exclude + exclude)
    sta = dataclasses.replace(cfg.static, nodes_to_exclude=cfg.static.nodes_to_exclude + exclude)
    fusable = geometry is not None
    plans: list[_Plan] = []
    if cfg.mode == "auto" and cfg.fp32_fallback and fusable and not exclude:  # an fp32 graph: ships only where
        plans.append(_Plan("fp32-fused", "fused", None))                     # fp32 may
    if cfg.mode == "dynamic":
        name = "dynamic-fused" if dyn.fuse and fusable else "dynamic"
        plans.append(_Plan(f"{name}{suffix}", "dynamic", dataclasses.replace(dyn, fuse=dyn.fuse and fusable)))
    if cfg.mode == "auto":
        plans.append(_Plan(f"dynamic{suffix}", "dynamic", dataclasses.replace(dyn, fuse=False)))
        if dyn.weight_type == "int8":
            plans.append(_Plan(f"dynamic-u8u8{suffix}", "dynamic",  # exact everywhere: all 8 bits
                               dataclasses.replace(dyn, fuse=False, weight_type="uint8", reduce_range=False)))
        if fusable:
            plans.append(_Plan(f"dynamic-fused{suffix}", "dynamic", dataclasses.replace(dyn, fuse=True)))
    if cfg.mode in ("static", "auto"):
        plans.append(_Plan(f"static{suffix}", "static", sta))
    return plans


def _options(cfg: DynamicQuantConfig | StaticQuantConfig | None) -> dict[str, Any]:
    if cfg is None:
        return {}
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items() if v != ()}


def _scheme(plan: _Plan) -> str:
    return "fp32-fused" if plan.cfg is None else scheme(plan.cfg) + ("-fused" if getattr(plan.cfg, "fuse", False)
                                                                      else "")


def _metric(name: str, logits: np.ndarray, labels: np.ndarray) -> float:
    """The primary metric of a classification manifest; only accuracy is defined for now."""
    if name != "accuracy":
        raise QuantizationError(f"primary metric {name!r} is not supported by the gate (accuracy is)")
    return float((logits.argmax(-1) == labels).mean())


def _run(path: Path, inputs: Arrays, holdout: Holdout | None = None,
         logits: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Logits of one model file on the held-out inputs (`logits`: already computed on them), and on the live
    model's held-out rows (None without them). Latency is measured later, for every candidate side by side."""
    if logits is not None and holdout is None:
        return logits, None
    sess = open_session(path, error=QuantizationError, what="this model")
    if logits is None:
        logits = predict_batched(sess, inputs)
    return logits, predict_batched(sess, holdout.inputs) if holdout is not None else None


def _cosines(logits: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Mean and minimum, over rows, of the cosine between a candidate's logits and fp32's."""
    a, b = logits.astype(np.float64), reference.astype(np.float64)
    cos = (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-30)
    return float(cos.mean()), float(cos.min())


# The fused graph must match the exported one as the export matched PyTorch (export.onnx_export's bounds).
FUSED_ATOL, FUSED_RTOL = 1e-4, 1e-3
FUSED_LOGITS = "fp32-fused.heldout.npy"  # its parity check's logits on the held-out rows, reused to score it


def _robustness(path: Path, plan: _Plan, bench: _Bench, logits: np.ndarray) -> tuple[dict[str, Any], str | None]:
    """The checks that make one INT8 file compute the same on every CPU Lambda runs on: the default kernel path
    against the exact U8U8 one on the held-out rows (they must agree on every top-1), and the weights' int16
    saturation bound (with `isa_robust`). Returns the report's fields and a refusal, or None."""
    exact = predict_batched(engine.exact_session(path), bench.inputs)
    agree = float((exact.argmax(-1) == logits.argmax(-1)).mean())
    sat = engine.saturation_check(path)
    fields = {"exact_agreement": agree, "exact_max_diff": float(np.abs(exact - logits).max()),
              "exact_path_exercised": engine.exact_path_exercised(sat, engine.host_isa()),
              "saturation": sat.describe()}
    if agree < 1.0:
        rows = round((1 - agree) * len(logits))
        return fields, (f"the default and the exact (U8U8) kernel paths disagree on the top-1 of {rows} of "
                        f"{len(logits)} held-out rows on this {engine.host_isa()} host")
    if bench.cfg.isa_robust and not sat.safe:
        return fields, f"not ISA-robust: {sat.describe()}; use 7-bit weights (reduce_range) or U8U8"
    return fields, None


def _left_padded(inputs: Arrays, rows: int = 16) -> Arrays | None:
    """Some held-out rows with their padding moved to the front (a text model's mask): the fused attention must
    read the mask as the unfused graph does, not as right-padded lengths."""
    mask = inputs.get("attention_mask")
    if mask is None or mask.ndim != 2:
        return None
    n = min(rows, len(mask))
    shift = mask[:n].shape[1] - mask[:n].sum(axis=1)
    return {k: np.stack([np.roll(v[i], int(shift[i])) for i in range(n)]) if v.ndim == 2 and v.shape == mask.shape
            else v[:n] for k, v in inputs.items()}


def _fused_parity(bench: _Bench, fused: Path) -> tuple[str | None, np.ndarray | None]:
    """A refusal when the fused graph's logits leave the export's parity bound against the exported model, on
    the held-out rows and on some of them left-padded; and its logits on the held-out rows (scored once)."""
    fused_sess = open_session(fused, error=QuantizationError, what="the fused graph")
    cases = [("held-out rows", bench.inputs, bench.fp32_logits)]
    left = _left_padded(bench.inputs)
    if left is not None:
        ref_sess = open_session(bench.fp32_path, error=QuantizationError, what="this model")
        cases.append(("left-padded held-out rows", left, predict_batched(ref_sess, left)))
    heldout = None
    for what, inputs, ref in cases:
        if ref is None:
            continue
        logits = predict_batched(fused_sess, inputs)
        if inputs is bench.inputs:
            heldout = logits
        diff = float(np.abs(logits - ref).max())
        bound = FUSED_ATOL + FUSED_RTOL * float(np.abs(ref).max())
        if not np.isfinite(logits).all() or diff > bound:
            return (f"the fused graph differs from the exported model on {what}: max |diff| {diff:.3g} > allowed "
                    f"{bound:.3g}"), None
    return None, heldout


def _on_holdout(bench: _Bench, logits: np.ndarray | None) -> _Scored | None:
    if bench.holdout is None or logits is None:
        return None
    return _Scored(_metric(bench.metric_name, logits, bench.holdout.labels), logits.argmax(-1))


def _judge(bench: _Bench, metric: float, pred: np.ndarray, on_holdout: _Scored | None) -> _Verdict:
    """One gate for every model that could ship: against fp32 and the floor, then against live on the
    candidate's rows, then against live on the live model's own rows (the uploader did not choose those)."""
    gate = bench.cfg.gate
    passed, reason = gate.check(bench.fp32_metric, metric)
    if passed:
        agreed, why = gate.check_agreement(int((pred != bench.fp32_pred).sum()), len(pred))
        passed, reason = agreed, (why if not agreed else f"{reason}; {why}")
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
    logits, holdout_logits = _run(md.model_path, inputs, side.holdout)
    fp32_metric = _metric(manifest.primary_metric, logits, labels)
    bench = _Bench(fp32_path=md.model_path, work=work, metric_name=manifest.primary_metric, inputs=inputs,
                   labels=labels, calibration=calibration, cfg=cfg, fp32_pred=logits.argmax(-1),
                   fp32_metric=fp32_metric, fp32_logits=logits, geometry=engine.fusion_geometry(md.model_path),
                   live=side.score, holdout=side.holdout)
    bench = dataclasses.replace(bench, fp32_holdout=_on_holdout(bench, holdout_logits))
    verdict = _judge(bench, fp32_metric, bench.fp32_pred, bench.fp32_holdout)
    fp32 = CandidateResult(name="fp32", mode="none", scheme="fp32", size_bytes=md.model_path.stat().st_size,
                           metric=fp32_metric, agreement=1.0, cosine_mean=1.0, cosine_min=1.0, drop=0.0,
                           fused_ops=engine.op_counts(md.model_path),
                           **(verdict.fields() | {"passed": verdict.passed,
                                                  "reason": "reference" if verdict.passed else verdict.reason}))
    return bench, fp32


def _fused(bench: _Bench) -> Path:
    """The fp32 graph after the transformer fusions, made once per run and checked against the export."""
    target, failed = bench.work / "fp32-fused.onnx", bench.work / "fp32-fused.failed"
    if failed.is_file():  # fused once per run: a failure is not redone for every fused plan
        raise QuantizationError(failed.read_text())
    if not target.is_file():
        try:
            if bench.geometry is None:
                raise QuantizationError("the model is not an encoder the export marked fusable")
            engine.fuse_transformer(bench.fp32_path, bench.work / "fused.tmp.onnx", bench.geometry)
            refusal, logits = _fused_parity(bench, bench.work / "fused.tmp.onnx")
            if refusal is not None:
                raise QuantizationError(refusal)
            if logits is not None:
                np.save(bench.work / FUSED_LOGITS, logits)
        except Exception as exc:
            failed.write_text(f"{type(exc).__name__}: {exc}"[:300])
            raise
        (bench.work / "fused.tmp.onnx").rename(target)
    return target


def _build(plan: _Plan, bench: _Bench) -> Path:
    target = bench.work / f"{plan.name}.onnx"
    if plan.cfg is None:
        return _fused(bench)
    if isinstance(plan.cfg, DynamicQuantConfig):
        source = _fused(bench) if plan.cfg.fuse else bench.fp32_path
        raw = engine.quantize_dynamic(source, bench.work / f"{plan.name}.quantized.onnx", plan.cfg)
        return engine.preoptimize(raw, target)
    return engine.quantize_static(bench.fp32_path, target, plan.cfg, bench.calibration)


def _candidate(plan: _Plan, bench: _Bench) -> tuple[CandidateResult, Path | None]:
    """Build and score one candidate (latency comes later, side by side); a candidate that fails is reported,
    not raised."""
    result = CandidateResult(name=plan.name, mode=plan.mode, scheme=_scheme(plan), options=_options(plan.cfg))
    try:
        target = _build(plan, bench)
        scored = bench.work / FUSED_LOGITS
        known = np.load(scored, allow_pickle=False) if plan.cfg is None and scored.is_file() else None
        logits, holdout_logits = _run(target, bench.inputs, bench.holdout, known)
        metric = _metric(bench.metric_name, logits, bench.labels)
        verdict = _judge(bench, metric, logits.argmax(-1), _on_holdout(bench, holdout_logits))
        robust, refusal = _robustness(target, plan, bench, logits) if plan.cfg is not None else ({}, None)
    except Exception as exc:
        return result.model_copy(update={"passed": False, "reason": f"failed: {type(exc).__name__}: {exc}"[:300]}), \
            None
    cos_mean, cos_min = _cosines(logits, bench.fp32_logits) if bench.fp32_logits is not None else (None, None)
    fields = verdict.fields()
    if refusal is not None and verdict.passed:
        fields |= {"passed": False, "reason": refusal}
    return result.model_copy(update={
        "size_bytes": target.stat().st_size, "metric": metric,
        "agreement": float((logits.argmax(-1) == bench.fp32_pred).mean()), "drop": bench.fp32_metric - metric,
        "cosine_mean": cos_mean, "cosine_min": cos_min, "fused_ops": engine.op_counts(target), **robust, **fields,
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
    outcomes = _run_plans(_plans(cfg, bench.geometry), bench, say)
    fallback = False
    if cfg.mode == "auto" and not any(r.passed for r, _ in outcomes if r.mode != "fused"):  # no INT8 passed
        exclude = engine.sensitive_nodes(bench.fp32_path)
        if exclude:
            say(f"no candidate passed; retrying without the sensitive nodes {', '.join(exclude)}")
            fallback = True
            outcomes += _run_plans(_plans(cfg, bench.geometry, exclude), bench, say)
    files = {r.name: path for r, path in outcomes if path is not None}
    return [r for r, _ in outcomes], files, fallback


Samples = dict[str, np.ndarray]


def _timed(bench: _Bench, fp32: CandidateResult, results: list[CandidateResult], files: dict[str, Path],
           say: Progress) -> tuple[CandidateResult, list[CandidateResult], Samples]:
    """Every built model's batch-1 latency, measured side by side in interleaved rounds, with its interval, and
    the rounds themselves (round r of one model pairs with round r of another)."""
    cfg = bench.cfg
    paths = {"fp32": bench.fp32_path, **{r.name: files[r.name] for r in results if r.name in files}}
    calls: dict[str, Callable[[], object]] = {}
    for name, path in paths.items():
        sess = open_session(path, error=QuantizationError, what="this model")
        calls[name] = partial(sess.run, None, {i.name: np.ascontiguousarray(bench.inputs[i.name][:1])
                                               for i in sess.get_inputs()})
    say(f"timing {len(calls)} models side by side: {cfg.latency_runs} rounds of {cfg.latency_block} calls")
    samples = interleaved_samples(calls, rounds=cfg.latency_runs, block=cfg.latency_block)

    def timed(r: CandidateResult) -> CandidateResult:
        if r.name not in samples:
            return r
        t = summarize(samples[r.name], cfg.confidence)
        return r.model_copy(update={"latency_ms_p50": t["p50"], "latency_ms_lo": t["lo"], "latency_ms_hi": t["hi"]})
    return timed(fp32), [timed(r) for r in results], samples


class _Speed:
    """Whether one model is measurably slower than another: the interval of the median of their per-round
    ratios lies above 1 (the rounds are paired, so this sees a steady 5 % that overlapping intervals hide), or,
    without rounds, its own interval lies wholly above the other's."""

    def __init__(self, samples: Samples | None, confidence: float) -> None:
        self.samples, self.confidence = samples or {}, confidence

    def slower(self, a: CandidateResult, b: CandidateResult) -> bool:
        lo_a = a.latency_ms_lo if a.latency_ms_lo is not None else float("inf")
        hi_b = b.latency_ms_hi if b.latency_ms_hi is not None else float("inf")
        if lo_a > hi_b:
            return True
        sa, sb = self.samples.get(a.name), self.samples.get(b.name)
        if sa is None or sb is None:
            return False
        return median_interval(sa / sb, self.confidence)[0] > 1.0


def _pick(pool: list[CandidateResult], fp32: CandidateResult, *, auto: bool, samples: Samples | None = None,
          confidence: float = 0.95) -> tuple[CandidateResult | None, str]:
    """The smallest model that is not measurably slower than the fastest; in auto, none measurably slower than
    fp32 (when that leaves nothing, fp32 may not ship: the fastest, said so). A mode the caller named explicitly
    ships its fastest INT8 model even when fp32 is faster: it was asked for."""
    speed = _Speed(samples, confidence)

    def p50(r: CandidateResult) -> float:
        return r.latency_ms_p50 if r.latency_ms_p50 is not None else float("inf")

    note = ""
    if auto:
        kept = [r for r in pool if r.mode in ("none", "fused") or not speed.slower(r, fp32)]
        if not kept:
            note = "; every INT8 model is measurably slower than fp32, which may not ship here (fp32_fallback off)"
        pool = kept or pool
    fastest = min(pool, key=p50)
    close = [r for r in pool if r is fastest or not speed.slower(r, fastest)]
    best = min(close, key=lambda r: (r.size_bytes or 0, p50(r)))
    why = "the fastest" if best is fastest else \
        f"the smallest not measurably slower than the fastest ({fastest.name}, {p50(fastest):.2f} ms)"
    return best, f"{why}, p50 {p50(best):.2f} ms [{best.latency_ms_lo or 0:.2f}, {best.latency_ms_hi or 0:.2f}]{note}"


def _choose(bench: _Bench, fp32: CandidateResult, results: list[CandidateResult], files: dict[str, Path],
            fallback: bool, samples: Samples | None = None) -> _Choice:
    """Among the candidates that pass (and, in auto with the fallback allowed, fp32 itself when it passes the
    same gate), the smallest not measurably slower than the fastest; else fp32 if allowed and it passes; else
    none."""
    cfg = bench.cfg
    passing = [r for r in results if r.passed]
    fp32_may_ship = cfg.mode == "auto" and cfg.fp32_fallback and fp32.passed
    if passing:
        best, why = _pick(passing + ([fp32] if fp32_may_ship else []), fp32, auto=cfg.mode == "auto",
                          samples=samples, confidence=cfg.confidence)
        assert best is not None
        if best.name == "fp32":
            return _Choice("fp32", bench.fp32_path, fallback, True, f"fp32 ships, {why}")
        return _Choice(best.name, files[best.name], fallback, True, f"{best.name} ({why}): {best.reason}")
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
                                         source_sha256=report.source_sha256, scheme=chosen.scheme or None,
                                         host_isa=report.host_isa or None),
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
            fp32, results, rounds = _timed(bench, fp32, results, files, say)
            choice = _choose(bench, fp32, results, files, fallback, rounds)
        report = QuantizationReport(
            recipe=manifest.recipe, primary_metric=manifest.primary_metric, requested_mode=cfg.mode,
            gate={"max_drop": cfg.gate.max_drop, "min_metric": cfg.gate.min_metric,
                  "min_agreement": cfg.gate.min_agreement},
            source_sha256=manifest.files[manifest.model_file], eval_rows=len(bench.labels), fp32=fp32,
            host_isa=engine.host_isa(),
            timing={"rounds": cfg.latency_runs, "block": cfg.latency_block, "confidence": cfg.confidence},
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
