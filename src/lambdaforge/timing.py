"""Latency statistics shared by the CLI's `bench` and the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable

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
