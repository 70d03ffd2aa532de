"""INT8 that computes the same on every CPU: the int16 saturation bound, the default-vs-exact kernel path
comparison, the host's ISA class, and `auto`'s choice by latency intervals.

Tiny ONNX graphs built with onnx.helper (no torch); the saturation bound is computed from the weights the
quantizer wrote, not written in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lambdaforge.quantize import QuantizeConfig, engine, quantize_model_dir
from lambdaforge.quantize.api import _pick
from lambdaforge.quantize.config import DynamicQuantConfig, StaticQuantConfig, preset, scheme
from lambdaforge.quantize.report import CandidateResult
from lambdaforge.timing import median_interval
from tests.unit.test_champion_gate import PERFECT, write_model


def _matmul_model(path: Path, weights: np.ndarray) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    k, n = weights.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "mm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n])],
        [numpy_helper.from_array(weights.astype(np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # the TorchScript exporter's; onnx's default is newer than the images' onnxruntime loads
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(("reduce_range", "safe"), [(False, False), (True, True)])
def test_only_7_bit_weights_cannot_saturate_int16_on_avx2(tmp_path: Path, reduce_range: bool, safe: bool) -> None:
    weights = np.random.default_rng(0).normal(size=(64, 16))
    src = _matmul_model(tmp_path / "fp32.onnx", weights)
    out = engine.quantize_dynamic(src, tmp_path / "int8.onnx", DynamicQuantConfig(reduce_range=reduce_range))
    check = engine.saturation_check(out)
    assert check.weights == 1 and check.safe is safe, check.describe()
    # the bound is 255 x the two largest same-sign weights the quantizer wrote
    import onnx
    from onnx import numpy_helper

    q = next(numpy_helper.to_array(i) for i in onnx.load(str(out)).graph.initializer if i.name == check.worst)
    assert q.shape == weights.shape and q.dtype == np.int8
    top = np.sort(np.abs(q.astype(np.int64)).ravel())[-2:].sum() * 255
    assert check.worst_pair_sum <= top
    assert (check.worst_pair_sum > 32767) is (not safe)


def test_uint8_weights_run_the_exact_path_and_are_not_checked(tmp_path: Path) -> None:
    src = _matmul_model(tmp_path / "fp32.onnx", np.random.default_rng(1).normal(size=(32, 8)))
    out = engine.quantize_dynamic(src, tmp_path / "u8u8.onnx", DynamicQuantConfig(weight_type="uint8"))
    check = engine.saturation_check(out)
    assert check.safe and check.weights == 0


def test_schemes_name_the_integer_path() -> None:
    assert scheme(DynamicQuantConfig()) == "u8s8-7bit"
    assert scheme(DynamicQuantConfig(reduce_range=False)) == "u8s8"
    assert scheme(DynamicQuantConfig(weight_type="uint8")) == "u8u8"
    assert scheme(StaticQuantConfig(activation_type="int8")) == "s8s8-7bit"
    assert preset("vnni-only").isa_robust is False and preset("auto").isa_robust is True


@pytest.mark.parametrize(("flags", "machine", "expected"), [
    ({"avx2", "fma"}, "x86_64", "x86-avx2"),
    ({"avx2", "avx512f", "avx512_vnni"}, "x86_64", "x86-vnni"),
    ({"avx2", "avx_vnni"}, "x86_64", "x86-vnni"),
    ({"avx2", "avx512_vnni", "amx_int8"}, "x86_64", "x86-amx"),
    ({"asimd", "asimddp"}, "aarch64", "arm64-sdot"),
    ({"asimd", "asimddp", "i8mm"}, "aarch64", "arm64-i8mm"),
    ({"sse4_2"}, "x86_64", "x86_64-baseline"),
])
def test_host_isa_classes(flags: set[str], machine: str, expected: str) -> None:
    assert engine.host_isa(flags, machine) == expected


class _Disagreeing:
    """A session whose logits are the real ones negated: every top-1 moves, as a saturating kernel could."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def get_inputs(self) -> Any:
        return self._real.get_inputs()

    def run(self, names: Any, feed: Any) -> list[np.ndarray]:
        return [-out for out in self._real.run(names, feed)]


def test_a_model_whose_kernel_paths_disagree_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    md = write_model(tmp_path / "model", PERFECT)
    real = engine.exact_session
    monkeypatch.setattr(engine, "exact_session", lambda path: _Disagreeing(real(path)))
    out = quantize_model_dir(md, tmp_path / "out", QuantizeConfig(mode="dynamic", latency_runs=5))
    assert out.model_dir is None and not out.report.gate_passed
    cand = out.report.candidates[0]
    assert cand.exact_agreement is not None and cand.exact_agreement < 1.0
    assert "exact (U8U8) kernel paths disagree" in cand.reason, cand.reason


def test_an_8_bit_model_is_refused_unless_the_fleet_has_vnni(tmp_path: Path) -> None:
    md = write_model(tmp_path / "model", np.random.default_rng(5).normal(size=(4, 3)).astype(np.float32) * 3)
    robust = QuantizeConfig(mode="dynamic", dynamic=DynamicQuantConfig(reduce_range=False), latency_runs=5)
    out = quantize_model_dir(md, tmp_path / "out", robust)
    cand = out.report.candidates[0]
    assert cand.saturation is not None and "CAN saturate" in cand.saturation
    assert not cand.passed and "not ISA-robust" in cand.reason
    vnni = QuantizeConfig(mode="dynamic", dynamic=DynamicQuantConfig(reduce_range=False), latency_runs=5,
                          isa_robust=False)
    cand = quantize_model_dir(md, tmp_path / "out-vnni", vnni).report.candidates[0]
    assert cand.exact_agreement is not None and cand.exact_path_exercised is not None
    # the kernel paths are still compared: on an AVX2 host they may differ here, and then it is refused
    assert cand.passed or "kernel paths disagree" in cand.reason, cand.reason
    if not cand.exact_path_exercised:
        assert cand.exact_agreement == 1.0 and cand.exact_max_diff == 0.0  # one path: nothing to differ


def test_a_7_bit_model_records_its_scheme_and_host(tmp_path: Path) -> None:
    md = write_model(tmp_path / "model", PERFECT)
    out = quantize_model_dir(md, tmp_path / "out", QuantizeConfig(mode="dynamic", latency_runs=5))
    assert out.model_dir is not None, out.report.gate_reason
    quant = out.model_dir.manifest.quantization
    assert quant is not None and quant.scheme == "u8s8-7bit" and quant.host_isa == engine.host_isa()
    cand = out.report.candidates[0]
    assert cand.exact_agreement == 1.0 and cand.saturation is not None and cand.saturation.startswith("cannot")
    assert cand.exact_path_exercised is False  # 7-bit weights: onnxruntime converts nothing, on any host
    assert cand.cosine_min is not None and 0.9 < cand.cosine_min <= cand.cosine_mean <= 1.0 + 1e-9  # type: ignore[operator]
    assert cand.latency_ms_lo is not None and cand.latency_ms_hi is not None
    assert cand.latency_ms_lo <= cand.latency_ms_p50 <= cand.latency_ms_hi  # type: ignore[operator]


def _c(name: str, p50: float, lo: float, hi: float, size: int) -> CandidateResult:
    return CandidateResult(name=name, mode="dynamic", latency_ms_p50=p50, latency_ms_lo=lo, latency_ms_hi=hi,
                           size_bytes=size, passed=True)


def test_auto_ships_fp32_when_every_int8_model_is_measurably_slower() -> None:
    fp32 = _c("fp32", 76.8, 75.9, 77.5, 90)
    int8 = _c("dynamic", 80.4, 79.8, 81.2, 23)  # the Zen 1 host: INT8 slower than fp32
    best, why = _pick([int8, fp32], fp32, auto=True)
    assert best is fp32, why


def test_auto_prefers_the_smaller_model_only_when_it_is_not_measurably_slower() -> None:
    fp32 = _c("fp32", 15.70, 15.2, 16.3, 90)
    int8 = _c("dynamic", 15.06, 14.5, 15.9, 23)  # within noise of fp32: the smaller ships
    assert _pick([int8, fp32], fp32, auto=True)[0] is int8
    fused = _c("dynamic-fused", 9.0, 8.8, 9.2, 22)
    plain = _c("dynamic", 9.1, 8.9, 9.4, 23)
    assert _pick([plain, fused, fp32], fp32, auto=True)[0] is fused
    small_slow = _c("static", 11.0, 10.6, 11.5, 20)  # smaller, but measurably slower than the fastest
    assert _pick([plain, small_slow, fp32], fp32, auto=True)[0] is plain


def test_a_steady_5_percent_is_measurably_slower_though_the_intervals_overlap() -> None:
    """Paired rounds see what two overlapping intervals hide: a candidate 5 % slower in every round."""
    rng = np.random.default_rng(1)
    base = 10 + rng.normal(0, 0.6, 30)  # the host's noise, shared by both in each round
    fp32, int8 = _c("fp32", 10.0, 9.7, 10.3, 90), _c("dynamic", 10.5, 10.2, 10.8, 23)
    rounds = {"fp32": base, "dynamic": base * 1.05}
    best, why = _pick([int8, fp32], fp32, auto=True, samples=rounds)
    assert best is fp32, why
    rounds = {"fp32": base, "dynamic": base * (1 + rng.normal(0, 0.03, 30))}  # the same speed, in noise
    assert _pick([int8, fp32], fp32, auto=True, samples=rounds)[0] is int8


def test_strict_ships_the_fastest_int8_and_says_fp32_was_faster() -> None:
    fp32 = _c("fp32", 1.0, 0.9, 1.1, 90)
    slow, slower = _c("dynamic", 2.0, 1.9, 2.1, 23), _c("static", 3.0, 2.9, 3.1, 20)
    best, why = _pick([slow, slower], fp32, auto=True)  # fp32 not in the pool: fp32_fallback is off
    assert best is slow and "measurably slower than fp32" in why


def test_an_explicit_mode_ships_int8_even_when_fp32_is_faster() -> None:
    fp32 = _c("fp32", 1.0, 0.9, 1.1, 90)
    int8 = _c("dynamic", 2.0, 1.9, 2.1, 23)
    assert _pick([int8], fp32, auto=False)[0] is int8


def test_the_median_interval_holds_the_median_and_narrows_with_rounds() -> None:
    rng = np.random.default_rng(0)
    few, many = rng.normal(10, 1, 10), rng.normal(10, 1, 400)
    lo_f, hi_f = median_interval(few)
    lo_m, hi_m = median_interval(many)
    assert lo_f <= np.median(few) <= hi_f and lo_m <= np.median(many) <= hi_m
    assert hi_m - lo_m < hi_f - lo_f

