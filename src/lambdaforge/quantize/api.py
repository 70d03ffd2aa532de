"""Quantize a verified model directory into a new, servable one, behind the accuracy gate."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lambdaforge.artifact.manifest import QuantizationInfo
from lambdaforge.artifact.modeldir import ModelDir, open_model_dir, sha256_file, write_manifest
from lambdaforge.quantize import engine
from lambdaforge.quantize.config import DynamicQuantConfig, QuantizeConfig, StaticQuantConfig
from lambdaforge.quantize.errors import QuantizationError
from lambdaforge.quantize.report import CandidateResult, QuantizationReport

Progress = Callable[[str], None]
SERVED_NAME = "model.onnx"


@dataclass(frozen=True)
class _Plan:
    name: str
    mode: str
    cfg: DynamicQuantConfig | StaticQuantConfig


def _load_samples(md: ModelDir, name: str | None, what: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
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


def quantize_model_dir(src: Path | str, out: Path | str, cfg: QuantizeConfig | None = None, *,
                       progress: Progress | None = None) -> QuantizationReport:
    """Verify `src`, try the candidates `cfg` asks for, gate them, and write the chosen model to `out`.

    `out` must not exist (or be empty): quantization writes new directories, never in place.
    The report is written even when the gate fails; the model directory only when it passes.
    """
    cfg = cfg or QuantizeConfig()
    say = progress or (lambda _msg: None)
    md = open_model_dir(src)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise QuantizationError(f"{out}: output directory is not empty; quantization never overwrites")
    manifest = md.manifest
    fp32_path = md.model_path
    eval_inputs, eval_labels = _load_samples(md, manifest.eval_file, "evaluation")
    calibration = _load_samples(md, manifest.calibration_file, "calibration")[0] \
        if cfg.mode in ("static", "auto") else {}

    with tempfile.TemporaryDirectory(prefix="lf-quant-") as tmp_name:
        tmp = Path(tmp_name)
        say("measuring the fp32 model")
        fp32_sess = engine.session(fp32_path)
        fp32_logits = engine.predict(fp32_sess, eval_inputs)
        fp32_pred = fp32_logits.argmax(-1)
        fp32_metric = _metric(manifest.primary_metric, fp32_logits, eval_labels)
        fp32 = CandidateResult(name="fp32", mode="none", size_bytes=fp32_path.stat().st_size,
                               latency_ms_p50=engine.latency_p50_ms(fp32_sess, eval_inputs, cfg.latency_runs),
                               metric=fp32_metric, agreement=1.0, drop=0.0, passed=True, reason="reference")
        del fp32_sess

        results: list[CandidateResult] = []
        files: dict[str, Path] = {}

        def run(plans: list[_Plan]) -> None:
            for plan in plans:
                say(f"candidate {plan.name}")
                target = tmp / f"{plan.name}.onnx"
                result = CandidateResult(name=plan.name, mode=plan.mode, options=_options(plan.cfg))
                try:
                    if isinstance(plan.cfg, DynamicQuantConfig):
                        source = engine.fuse_transformer(fp32_path, tmp / f"{plan.name}.fused.onnx") \
                            if plan.cfg.fuse else fp32_path
                        engine.quantize_dynamic(source, target, plan.cfg)
                    else:
                        engine.quantize_static(fp32_path, target, plan.cfg, calibration)
                    sess = engine.session(target)
                    logits = engine.predict(sess, eval_inputs)
                    metric = _metric(manifest.primary_metric, logits, eval_labels)
                    passed, reason = cfg.gate.check(fp32_metric, metric)
                    result = result.model_copy(update={
                        "size_bytes": target.stat().st_size,
                        "latency_ms_p50": engine.latency_p50_ms(sess, eval_inputs, cfg.latency_runs),
                        "metric": metric, "agreement": float((logits.argmax(-1) == fp32_pred).mean()),
                        "drop": fp32_metric - metric, "passed": passed, "reason": reason,
                    })
                    files[plan.name] = target
                except Exception as exc:
                    result = result.model_copy(update={"passed": False,
                                                       "reason": f"failed: {type(exc).__name__}: {exc}"[:300]})
                results.append(result)

        run(_plans(cfg))
        fallback = False
        if cfg.mode == "auto" and not any(r.passed for r in results):
            exclude = engine.sensitive_nodes(fp32_path)
            if exclude:
                say(f"no candidate passed; retrying without the sensitive nodes {', '.join(exclude)}")
                fallback = True
                run(_plans(cfg, exclude))

        passing = [r for r in results if r.passed]
        if passing:
            best = min(passing, key=lambda r: (r.latency_ms_p50 or float("inf"), r.size_bytes or 0))
            chosen, chosen_file = best.name, files[best.name]
            gate_passed, gate_reason = True, f"{best.name}: {best.reason}"
        elif cfg.mode == "auto" and cfg.fp32_fallback:
            fallback = True
            chosen, chosen_file = "fp32", fp32_path
            gate_passed, gate_reason = cfg.gate.check(fp32_metric, fp32_metric)
            gate_reason = f"no INT8 candidate passed; shipping fp32 ({gate_reason})"
        else:
            chosen, chosen_file = "none", None
            gate_passed = False
            details = "; ".join(f"{r.name}: {r.reason}" for r in results)
            gate_reason = f"no candidate passed the accuracy gate: {details}"

        report = QuantizationReport(
            recipe=manifest.recipe, primary_metric=manifest.primary_metric, requested_mode=cfg.mode,
            gate={"max_drop": cfg.gate.max_drop, "min_metric": cfg.gate.min_metric},
            source_sha256=sha256_file(fp32_path), eval_rows=len(eval_labels), fp32=fp32, candidates=results,
            chosen=chosen, fallback=fallback, gate_passed=gate_passed, gate_reason=gate_reason,
        )
        out.mkdir(parents=True, exist_ok=True)
        write_report(report, out)
        if not gate_passed or chosen_file is None:
            return report

        say(f"writing {out} with {chosen}")
        shutil.copyfile(chosen_file, out / SERVED_NAME)
        keep = [manifest.eval_file, *manifest.assets]
        if manifest.calibration_file:
            keep.append(manifest.calibration_file)
        if manifest.preprocessing.tokenizer:
            keep.append(manifest.preprocessing.tokenizer)
        for rel in dict.fromkeys(keep):
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(md.file(rel), out / rel)
        chosen_result = report.chosen_result
        metrics = dict(manifest.metrics)
        metrics.update({manifest.primary_metric: float(chosen_result.metric or 0.0),
                        f"fp32_{manifest.primary_metric}": fp32_metric,
                        "int8_agreement": float(chosen_result.agreement or 0.0)})
        write_manifest(out, manifest.model_copy(update={
            "model_file": SERVED_NAME, "weights_file": None, "metrics": metrics,
            "quantization": QuantizationInfo(mode=cfg.mode, chosen=chosen, fallback=fallback,
                                             source_sha256=report.source_sha256),
        }))
        return report


def write_report(report: QuantizationReport, out: Path) -> None:
    (out / "quantization_report.json").write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    (out / "quantization_report.md").write_text(report.to_markdown(), encoding="utf-8")


def _metric(name: str, logits: np.ndarray, labels: np.ndarray) -> float:
    """The primary metric of a classification manifest; only accuracy is defined for now."""
    if name != "accuracy":
        raise QuantizationError(f"primary metric {name!r} is not supported by the gate (accuracy is)")
    return float((logits.argmax(-1) == labels).mean())
