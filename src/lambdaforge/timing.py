"""Latency statistics shared by quantization, the CLI's `bench` and the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np


def measure_ms(fn: Callable[[], object], *, runs: int, warmup: int = 5) -> dict[str, float]:
    """Warm latency of `fn` in milliseconds: p50, p99 and mean over `runs` calls."""
    for _ in range(warmup):
        fn()
    samples = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        fn()
        samples[i] = (time.perf_counter() - t0) * 1000
    return {"p50": float(np.percentile(samples, 50)), "p99": float(np.percentile(samples, 99)),
            "mean": float(samples.mean())}


def batch1_p50_ms(session: Any, inputs: dict[str, np.ndarray], runs: int) -> float:
    """Warm p50 of an onnxruntime session at batch 1: with one thread, what a one-vCPU Lambda sees."""
    feed = {i.name: inputs[i.name][:1] for i in session.get_inputs()}
    return measure_ms(partial(session.run, None, feed), runs=runs, warmup=3)["p50"]
