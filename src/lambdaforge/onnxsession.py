"""onnxruntime sessions and batched prediction, one way for every stage.

The runtime uses this module, so it imports no torch, and onnxruntime only when a session
is made (importing lambdaforge.runtime stays cheap).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lambdaforge.errors import LambdaforgeError

PROVIDERS = ["CPUExecutionProvider"]
PREDICT_BATCH = 64


def open_session(path: Path, *, error: type[LambdaforgeError], threads: int = 1, what: str = "the model") -> Any:
    """A CPU session with `threads` intra-op threads (0: onnxruntime's default) and one inter-op thread.

    A model onnxruntime cannot load raises `error`, the caller's own error class, naming the file.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=PROVIDERS)
    except Exception as exc:
        raise error(f"{path}: onnxruntime cannot load {what}: {exc}") from exc


def predict_batched(session: Any, inputs: dict[str, np.ndarray], batch: int = PREDICT_BATCH) -> np.ndarray:
    """The first output over all rows of `inputs`, run `batch` rows at a time."""
    names = [i.name for i in session.get_inputs()]
    n = len(inputs[names[0]])
    return np.concatenate([session.run(None, {k: inputs[k][i:i + batch] for k in names})[0]
                           for i in range(0, n, batch)])
