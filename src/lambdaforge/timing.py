"""Latency statistics shared by quantization, the CLI's `bench` and the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
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


def median_interval(samples: np.ndarray, confidence: float = 0.95, *, resamples: int = 2000,
                    seed: int = 0) -> tuple[float, float]:
    """A bootstrap interval of the median: robust to the stalls a shared host adds to a few samples."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(samples), size=(resamples, len(samples)))
    medians = np.median(samples[picks], axis=1)
    tail = (1 - confidence) / 2 * 100
    return float(np.percentile(medians, tail)), float(np.percentile(medians, 100 - tail))


def interleaved_samples(calls: Mapping[str, Callable[[], object]], *, rounds: int, block: int = 3,
                        warmup: int = 3) -> dict[str, np.ndarray]:
    """Time several callables side by side: each round runs every one `block` times, in an order that rotates
    each round, so a slow spell of the host lands on all of them alike. Per callable: each round's mean call
    time in milliseconds (round r of one callable pairs with round r of another)."""
    names = list(calls)
    for name in names:
        for _ in range(warmup):
            calls[name]()
    samples = {name: np.empty(rounds) for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            fn = calls[name]
            t0 = time.perf_counter()
            for _ in range(block):
                fn()
            samples[name][r] = (time.perf_counter() - t0) * 1000 / block
    return samples


def summarize(values: np.ndarray, confidence: float = 0.95) -> dict[str, float]:
    """The median of a callable's rounds (`p50`), its interval (`lo`, `hi`) and their mean, in milliseconds."""
    lo, hi = median_interval(values, confidence)
    return {"p50": float(np.median(values)), "lo": lo, "hi": hi, "mean": float(values.mean()),
            "rounds": float(len(values))}


def interleaved_ms(calls: Mapping[str, Callable[[], object]], *, rounds: int, block: int = 3, warmup: int = 3,
                   confidence: float = 0.95) -> dict[str, dict[str, float]]:
    """`interleaved_samples`, summarized per callable."""
    samples = interleaved_samples(calls, rounds=rounds, block=block, warmup=warmup)
    out: dict[str, dict[str, float]] = {}
    for name, values in samples.items():
        out[name] = summarize(values, confidence)
    return out
