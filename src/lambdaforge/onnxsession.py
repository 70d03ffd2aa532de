"""onnxruntime sessions and batched prediction, one way for every stage.

The runtime uses this module, so it imports no torch, and onnxruntime only when a session
is made (importing lambdaforge.runtime stays cheap).

Every session of a model (export parity, the quantization gate and its timing, serving) is made
here with the same options, so what the gate measured is what serves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lambdaforge.errors import LambdaforgeError

PROVIDERS = ["CPUExecutionProvider"]
PREDICT_BATCH = 64

# onnxruntime's own fusions that make its CPU kernels slower, measured side by side (benchmarks/bench_models.py,
# `slow_fusions`, on every run): on onnxruntime 1.31 and 1.32, SkipLayerNormalization ran 6-7x slower than the
# Add and LayerNormalization it replaces at (1, 128, 384), and BiasGelu 1.2x slower than Add and Gelu (1.5x slower
# than Gelu alone, which is what remains when an INT8 GEMM takes the bias).
# Disabled for every session; lambdaforge's transformer fusion leaves them out too (quantize.engine).
SLOW_FUSIONS = ("SkipLayerNormFusion", "BiasGeluFusion")
# ONNX metadata of a graph written with onnxruntime's optimizations applied (quantize.engine.preoptimize): the
# onnxruntime version that wrote it. Another version loads it and optimizes it again online; the runtime says so.
OPTIMIZED_BY_KEY = "lambdaforge.optimized_by"


def runtime_version() -> str:
    import onnxruntime as ort

    return f"onnxruntime {ort.__version__}"


def optimized_elsewhere(session: Any) -> str | None:
    """The onnxruntime version that pre-optimized this session's graph, when it is not the one running it."""
    wrote = session.get_modelmeta().custom_metadata_map.get(OPTIMIZED_BY_KEY)
    return wrote if wrote and wrote != runtime_version() else None


def session_options(threads: int = 1) -> Any:
    """Options with `threads` intra-op threads (0: onnxruntime's default) and one inter-op thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


def make_session(path: Path, options: Any) -> Any:
    """An onnxruntime CPU session of `path` with lambdaforge's graph policy (SLOW_FUSIONS off)."""
    import onnxruntime as ort

    return ort.InferenceSession(str(path), options, providers=PROVIDERS, disabled_optimizers=list(SLOW_FUSIONS))


def open_session(path: Path, *, error: type[LambdaforgeError], threads: int = 1, what: str = "the model",
                 optimized_to: Path | None = None) -> Any:
    """A CPU session (see `session_options`); `optimized_to`: also write the graph onnxruntime runs there.

    A model onnxruntime cannot load raises `error`, the caller's own error class, naming the file.
    """
    options = session_options(threads)
    if optimized_to is not None:
        options.optimized_model_filepath = str(optimized_to)
    try:
        return make_session(path, options)
    except Exception as exc:
        raise error(f"{path}: onnxruntime cannot load {what}: {exc}") from exc


def predict_batched(session: Any, inputs: dict[str, np.ndarray], batch: int = PREDICT_BATCH) -> np.ndarray:
    """The first output over all rows of `inputs`, run `batch` rows at a time."""
    names = [i.name for i in session.get_inputs()]
    n = len(inputs[names[0]])
    return np.concatenate([session.run(None, {k: inputs[k][i:i + batch] for k in names})[0]
                           for i in range(0, n, batch)])
