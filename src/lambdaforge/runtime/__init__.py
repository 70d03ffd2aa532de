"""The torch-free inference runtime: onnxruntime, numpy, tokenizers and Powertools only.

`get_predictor()` is the warm-container cache: the model is fetched, verified and loaded once
per execution environment.
"""

from __future__ import annotations

import os
import threading

from lambdaforge import envvars
from lambdaforge.runtime.errors import InvalidInputError, ModelNotReadyError, RuntimeModelError
from lambdaforge.runtime.predictor import Prediction, Predictor, default_threads
from lambdaforge.runtime.source import fetch, resolve_location

_lock = threading.Lock()
_cache: dict[str | None, Predictor] = {}


def get_predictor(location: str | None = None) -> Predictor:
    """The predictor for the configured model, created on first use and kept while warm.

    The location is resolved once per execution environment (a published version pins one
    model); until a model exists, every call tries again and raises ModelNotReadyError.
    """
    with _lock:
        predictor = _cache.get(location)
        if predictor is None:
            predictor = Predictor(fetch(resolve_location(location)))
            _cache[location] = predictor
        return predictor


def preload() -> str | None:
    """Load the model at init (cold start), not on the first request.

    A missing model is not fatal here: the reason comes back for the log, and requests answer
    503 until a model exists.
    """
    if os.environ.get(envvars.SKIP_PRELOAD) == "1":
        return None
    try:
        get_predictor()
    except RuntimeModelError as exc:
        return str(exc)
    return None


def reset() -> None:
    """Forget the loaded model (tests, and the local gateway when it switches models)."""
    with _lock:
        _cache.clear()


__all__ = [
    "InvalidInputError",
    "ModelNotReadyError",
    "Prediction",
    "Predictor",
    "RuntimeModelError",
    "default_threads",
    "fetch",
    "get_predictor",
    "preload",
    "reset",
    "resolve_location",
]
