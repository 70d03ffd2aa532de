"""Every session lambdaforge makes runs the graph without onnxruntime's slower fusions (SLOW_FUSIONS).

The contrast session shows the policy is not a no-op: onnxruntime, left alone, does fuse these graphs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from lambdaforge.errors import LambdaforgeError
from lambdaforge.onnxsession import SLOW_FUSIONS, open_session
from lambdaforge.quantize import engine


def _encoder_block(path: Path) -> Path:
    """A residual Add then LayerNormalization (SkipLayerNormFusion's pattern) and a bias Add then Gelu
    (BiasGeluFusion's)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=s).astype(np.float32), n)
             for n, s in (("gamma", (16,)), ("beta", (16,)), ("bias", (16,)))]
    nodes = [helper.make_node("Add", ["x", "skip"], ["sum"]),
             helper.make_node("LayerNormalization", ["sum", "gamma", "beta"], ["ln"], axis=-1, epsilon=1e-12),
             helper.make_node("Add", ["ln", "bias"], ["biased"]),
             helper.make_node("Gelu", ["biased"], ["y"], domain="com.microsoft")]
    graph = helper.make_graph(nodes, "block", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 8, 16])
                                               for n in ("x", "skip")],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16])], inits)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8  # the TorchScript exporter's; onnx's default is newer than the images' onnxruntime loads
    onnx.save(model, str(path))
    return path


def _ops(path: Path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_sessions_run_without_the_slow_fusions(tmp_path: Path) -> None:
    src = _encoder_block(tmp_path / "block.onnx")
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "default.onnx")
    ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
    assert {"SkipLayerNormalization", "BiasGelu"} <= _ops(tmp_path / "default.onnx")  # what the policy prevents

    feed = {n: np.ones((1, 8, 16), np.float32) for n in ("x", "skip")}
    ours = open_session(src, error=LambdaforgeError, optimized_to=tmp_path / "ours.onnx")
    ran = _ops(tmp_path / "ours.onnx")
    assert not ran & {"SkipLayerNormalization", "BiasGelu"}, ran
    assert ours.run(None, feed)[0].shape == (1, 8, 16)
    assert set(SLOW_FUSIONS) == {"SkipLayerNormFusion", "BiasGeluFusion"}


def test_the_exact_path_session_follows_the_same_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The exact U8U8 comparison must differ from the default session only in its kernel path."""
    made: list[tuple[list[str], str]] = []
    real = ort.InferenceSession

    def recording(path: str, options: ort.SessionOptions, **kwargs: Any) -> Any:
        try:
            exact = options.get_session_config_entry("session.x64quantprecision")
        except Exception:  # onnxruntime raises for an entry never set
            exact = ""
        made.append((kwargs.get("disabled_optimizers", []), exact))
        return real(path, options, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", recording)
    src = _encoder_block(tmp_path / "block.onnx")
    open_session(src, error=LambdaforgeError)
    engine.exact_session(src)
    assert made == [(list(SLOW_FUSIONS), ""), (list(SLOW_FUSIONS), "1")]


def _matmuls(path: Path) -> Path:
    """Two MatMuls with constant weights and some metadata: what dynamic quantization turns into integer GEMMs."""
    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(rng.normal(size=(16, 32)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(size=(32, 4)).astype(np.float32), "w2")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    model.metadata_props.add(key="lambdaforge.fusion", value="{}")
    onnx.save(model, str(path))
    return path


def test_a_preoptimized_candidate_computes_what_its_source_does(tmp_path: Path) -> None:
    """The file that ships has onnxruntime's fusions applied once (no work at cold start), the same answers, the
    same saturation verdict, the source's metadata and the version that wrote it."""
    from lambdaforge.onnxsession import OPTIMIZED_BY_KEY, optimized_elsewhere, runtime_version
    from lambdaforge.quantize.config import DynamicQuantConfig

    raw = engine.quantize_dynamic(_matmuls(tmp_path / "mlp.onnx"), tmp_path / "raw.onnx", DynamicQuantConfig())
    done = engine.preoptimize(raw, tmp_path / "shipped.onnx")
    assert "MatMulInteger" in _ops(raw) and "DynamicQuantizeMatMul" in _ops(done), _ops(done)
    meta = {p.key: p.value for p in onnx.load(str(done)).metadata_props}
    assert meta["lambdaforge.fusion"] == "{}" and meta[OPTIMIZED_BY_KEY] == runtime_version()
    x = {"x": np.random.default_rng(2).normal(size=(8, 16)).astype(np.float32)}
    a, b = (open_session(p, error=LambdaforgeError).run(None, x)[0] for p in (raw, done))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert engine.saturation_check(raw) == engine.saturation_check(done)
    assert optimized_elsewhere(open_session(done, error=LambdaforgeError)) is None


def test_a_graph_optimized_by_another_onnxruntime_is_named() -> None:
    """The runtime warns (it still serves) when the image's onnxruntime is not the one that optimized the graph."""
    from lambdaforge.onnxsession import OPTIMIZED_BY_KEY, optimized_elsewhere

    class Meta:
        def __init__(self, wrote: str | None) -> None:
            self.custom_metadata_map = {OPTIMIZED_BY_KEY: wrote} if wrote else {}

    class Session:
        def __init__(self, wrote: str | None) -> None:
            self.meta = Meta(wrote)

        def get_modelmeta(self) -> Meta:
            return self.meta

    assert optimized_elsewhere(Session("onnxruntime 0.1.0")) == "onnxruntime 0.1.0"
    assert optimized_elsewhere(Session(None)) is None
