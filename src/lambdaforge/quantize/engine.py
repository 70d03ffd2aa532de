"""Running onnxruntime's quantizers and measuring candidates on the artifact's samples."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lambdaforge.quantize.config import DynamicQuantConfig, StaticQuantConfig

Arrays = dict[str, np.ndarray]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """onnxruntime.quantization logs advice through the root logger; keep our output readable."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def preoptimize(src: Path, dst: Path) -> Path:
    """onnxruntime's basic and extended graph optimizations (its fusions), applied once here instead of at every
    cold start: session creation for the text model drops from about 50 to 33 ms. Not level 3 (layout), which
    depends on the CPU and stays online. The session policy (`onnxsession.SLOW_FUSIONS`) holds here too, and
    the gate scores the file written, so what it measured is what serves."""
    import onnx
    import onnxruntime as ort

    from lambdaforge.onnxsession import OPTIMIZED_BY_KEY, make_session, runtime_version, session_options

    options = session_options()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(dst)
    make_session(src, options)
    model = onnx.load(str(dst))  # onnxruntime kept the source's metadata; the version key is stated once
    kept = [p for p in model.metadata_props if p.key != OPTIMIZED_BY_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=OPTIMIZED_BY_KEY, value=runtime_version())
    onnx.save(model, str(dst))
    return dst


def _qtype(name: str) -> Any:
    from onnxruntime.quantization import QuantType

    return QuantType.QInt8 if name == "int8" else QuantType.QUInt8


FUSION_KEY = "lambdaforge.fusion"  # written by lambdaforge.export (which imports torch; this module does not)
FUSED_OPS = ("Attention", "QAttention", "MultiHeadAttention", "SkipLayerNormalization", "BiasGelu", "FastGelu",
             "Gelu", "EmbedLayerNormalization", "SkipSimplifiedLayerNormalization")


def fusion_geometry(path: Path) -> dict[str, Any] | None:
    """The encoder geometry the export recorded in the ONNX metadata; None: not a fusable encoder."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for prop in model.metadata_props:
        if prop.key == FUSION_KEY:
            geometry: dict[str, Any] = json.loads(prop.value)
            return geometry
    return None


def fuse_transformer(src: Path, dst: Path, geometry: dict[str, Any]) -> Path:
    """onnxruntime's transformer fusions (Attention, EmbedLayerNormalization, Gelu) for an encoder of the
    recorded geometry; opt_level 0: the fusions only, onnxruntime's own optimizations run at load.

    Not SkipLayerNormalization nor BiasGelu: their CPU kernels are slower than what they replace
    (`lambdaforge.onnxsession.SLOW_FUSIONS`, measured by the model benchmark)."""
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import AttentionMaskFormat, FusionOptions

    kind = str(geometry["model_type"])
    options = FusionOptions(kind)
    # The raw 0/1 mask, not sequence lengths: a left-padded or holed mask must mean what it means unfused.
    options.attention_mask_format = AttentionMaskFormat.AttentionMask
    options.enable_skip_layer_norm = False
    options.enable_bias_gelu = False
    with _quiet():
        model = optimizer.optimize_model(str(src), model_type=kind, num_heads=int(geometry["num_heads"]),
                                         hidden_size=int(geometry["hidden_size"]), opt_level=0,
                                         optimization_options=options)
        model.save_model_to_file(str(dst))
    return dst


def op_counts(path: Path, kinds: tuple[str, ...] = FUSED_OPS) -> dict[str, int]:
    """How many of each fused operator a graph holds (the report lists them)."""
    import onnx

    counts = Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node)
    return {k: counts[k] for k in kinds if counts[k]}


def quantize_dynamic(src: Path, dst: Path, cfg: DynamicQuantConfig) -> Path:
    import onnx
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    with _quiet():
        ort_quantize_dynamic(
            str(src), str(dst), per_channel=cfg.per_channel, weight_type=_qtype(cfg.weight_type),
            reduce_range=cfg.reduce_range,
            op_types_to_quantize=list(cfg.op_types) or None, nodes_to_exclude=list(cfg.nodes_to_exclude) or None,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return dst


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over the calibration samples, one row at a time."""

    def __init__(self, inputs: Arrays, rows: int) -> None:
        n = len(next(iter(inputs.values())))
        self._rows = iter([{k: v[i:i + 1] for k, v in inputs.items()} for i in range(min(rows, n))])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._rows, None)

    def rewind(self) -> None:  # part of the protocol; not needed for one pass
        return None


def quantize_static(src: Path, dst: Path, cfg: StaticQuantConfig, calibration: Arrays) -> Path:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    reader = _Reader(calibration, cfg.calibration_rows)
    CalibrationDataReader.register(_Reader)
    with _quiet():
        ort_quantize_static(
            str(src), str(dst), reader, quant_format=QuantFormat.QDQ, per_channel=cfg.per_channel,
            activation_type=_qtype(cfg.activation_type), weight_type=_qtype(cfg.weight_type),
            reduce_range=cfg.reduce_range,
            op_types_to_quantize=list(cfg.op_types) or None, nodes_to_exclude=list(cfg.nodes_to_exclude) or None,
            calibrate_method=methods[cfg.calibration_method],
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return dst


def quantizable_nodes(path: Path) -> list[str]:
    """Names of nodes the quantizers would touch, in graph order (for excluding the sensitive ones)."""
    import onnx

    model = onnx.load(str(path))
    kinds = {"Conv", "MatMul", "Gemm", "Attention"}
    return [n.name for n in model.graph.node if n.op_type in kinds and n.name]


def sensitive_nodes(path: Path) -> tuple[str, ...]:
    """The first and last quantizable nodes: the input projection and the classifier head,
    where INT8 error hurts most and saves least."""
    nodes = quantizable_nodes(path)
    if len(nodes) <= 2:
        return tuple(nodes)
    return (nodes[0], nodes[-1])


# --- ISA robustness ---------------------------------------------------------------------------------
# x86 without VNNI multiplies u8 activations by s8 weights with VPMADDUBSW, which adds each adjacent pair
# of products into a saturating int16. A pair can saturate only when 255 * (w1 + w2) leaves int16, so
# weights whose two largest magnitudes (of one sign) sum to at most 128 can never saturate, whatever the
# pairing and the input: 7-bit weights (reduce_range, [-64, 64]) satisfy it, full 8-bit ones do not.
# VNNI, AMX and arm64's SDOT accumulate in int32, and U8U8 widens to int16 before multiplying: exact.
_U8_MAX = 255
_INT16 = (-32768, 32767)
# Operators whose weight input (index) is multiplied by u8 activations in MLAS's U8S8 kernels.
_INTEGER_WEIGHT_INPUTS: dict[str, tuple[int, ...]] = {
    "MatMulInteger": (1,), "DynamicQuantizeMatMul": (1,), "MatMulIntegerToFloat": (1,), "QLinearMatMul": (3,),
    "ConvInteger": (1,), "QLinearConv": (3,), "QLinearConvTranspose": (3,), "QGemm": (3,), "QAttention": (1,),
    "DynamicQuantizeLSTM": (1, 2)}
# Float operators whose weight input, fed by a DequantizeLinear (QDQ), becomes a U8S8 kernel's.
_FLOAT_WEIGHT_INPUTS: dict[str, tuple[int, ...]] = {"MatMul": (1,), "Conv": (1,), "ConvTranspose": (1,),
                                                     "Gemm": (1,), "Attention": (1,)}


@dataclass(frozen=True)
class SaturationCheck:
    """Whether a quantized graph's U8S8 products can saturate int16 on x86 without VNNI."""

    safe: bool
    weights: int  # int8 weight tensors checked
    worst: str  # the tensor closest to (or past) the limit, and its pair sum
    worst_pair_sum: int  # 255 * (two largest same-sign weights); the limit is 32767 (or -32768)
    unresolved: tuple[str, ...] = ()  # weights of U8S8 operators that are not constants this check can read

    def describe(self) -> str:
        if self.unresolved:
            return (f"CAN saturate on x86 without VNNI, as far as this check can tell: the weights "
                    f"{', '.join(self.unresolved[:3])} are not int8 constants it can bound")
        verdict = "cannot saturate" if self.safe else "CAN saturate"
        return (f"{verdict} on x86 without VNNI: {self.weights} int8 weight tensors, worst pair sum "
                f"{self.worst_pair_sum} ({self.worst}; int16 holds {_INT16[0]}..{_INT16[1]})")


def _pair_sum(values: np.ndarray) -> int:
    """The largest |sum| of two same-sign weights times 255: the worst any input can make."""
    flat = values.astype(np.int64).ravel()
    pos = np.sort(flat[flat > 0])[-2:]
    neg = np.sort(flat[flat < 0])[:2]
    return max(int(pos.sum()) * _U8_MAX, -int(neg.sum()) * _U8_MAX)


def saturation_check(path: Path) -> SaturationCheck:
    """Inspect every int8 weight that meets u8 activations in a U8S8 kernel (integer operators, or a float
    operator fed by a DequantizeLinear of an int8 constant); uint8 weights run the exact U8U8 path."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {i.name: i for i in graph.initializer}
    dq_of = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    names: set[str] = set()
    for node in graph.node:
        if node.op_type in _INTEGER_WEIGHT_INPUTS:
            names.update(node.input[i] for i in _INTEGER_WEIGHT_INPUTS[node.op_type] if i < len(node.input))
        elif node.op_type in _FLOAT_WEIGHT_INPUTS:
            for i in _FLOAT_WEIGHT_INPUTS[node.op_type]:
                source = dq_of.get(node.input[i]) if i < len(node.input) else None
                if source is not None:
                    names.add(source)
    # A weight that is an activation quantized at run time (attention's Q x K in a QDQ graph): its type is its
    # QuantizeLinear's zero point's (uint8 when absent); uint8 meets the exact U8U8 kernel.
    zero_point_type = {n.output[0]: (inits[n.input[2]].data_type if len(n.input) > 2 and n.input[2] in inits
                                     else onnx.TensorProto.UINT8 if len(n.input) <= 2 else None)
                       for n in graph.node if n.op_type == "QuantizeLinear"}
    worst, worst_name, checked, unresolved = 0, "none", 0, []
    for name in sorted(n for n in names if n):
        init = inits.get(name)
        if init is None and zero_point_type.get(name) == onnx.TensorProto.UINT8:
            continue
        if init is None or init.data_type not in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8):
            unresolved.append(name)  # computed at run time, or a type this bound does not cover: not proven
            continue
        if init.data_type == onnx.TensorProto.UINT8:
            continue  # U8U8: widened to int16 before multiplying, exact on every CPU
        checked += 1
        pair = _pair_sum(numpy_helper.to_array(init))
        if pair > worst:
            worst, worst_name = pair, name
    return SaturationCheck(safe=worst <= _INT16[1] and not unresolved, weights=checked, worst=worst_name,
                           worst_pair_sum=worst, unresolved=tuple(unresolved))


def exact_session(path: Path) -> Any:
    """A session on onnxruntime's exact U8U8 path (`session.x64quantprecision`): on x86 without VNNI it turns
    s8 weights that could saturate (any beyond [-64, 64]) into u8; elsewhere, and for 7-bit weights, it changes
    nothing, so the comparison can only differ for 8-bit weights on such a host (`exact_path_exercised`)."""
    from lambdaforge.onnxsession import make_session, session_options

    options = session_options()
    options.add_session_config_entry("session.x64quantprecision", "1")
    return make_session(path, options)


def host_isa(flags: set[str] | None = None, machine: str | None = None) -> str:
    """The class of the CPU's integer GEMM path: what decides INT8 speed and whether U8S8 can saturate."""
    import platform

    arch = machine or platform.machine()
    if flags is None:
        flags = set()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    flags = set(value.split())
                    break
        except OSError:
            pass
    if arch in ("aarch64", "arm64"):
        return "arm64-i8mm" if "i8mm" in flags else "arm64-sdot" if "asimddp" in flags else "arm64"
    if "amx_int8" in flags:
        return "x86-amx"
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        return "x86-vnni"
    if "avx2" in flags:
        return "x86-avx2"  # U8S8 can saturate here: the exact-path comparison is meaningful
    return f"{arch}-baseline"


def exact_path_exercised(check: SaturationCheck, isa: str) -> bool:
    """Whether the exact path computes differently from the default one here: only on x86 without VNNI, and
    only for weights the saturation bound does not clear (onnxruntime converts no others)."""
    return isa in ("x86-avx2", "x86_64-baseline") and not check.safe
