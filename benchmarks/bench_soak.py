"""Soak: `lambdaforge serve` (local gateway + the real handler) under concurrency 32 for 60 s.

Most requests are good predictions; one in ten is a bad request from the project's bad-input
suite, so the error paths are soaked too. An error is any answer that is not the expected one: a
good request that does not get 200, a bad one that does not get its 4xx, a 5xx, or a dropped
connection. The server's RSS is sampled every 0.5 s; the report compares the mean of the first
and the last 10 s (the target: growth of at most 5 %).

    python benchmarks/bench_soak.py --out benchmarks/results/soak.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from common import ROOT, machine, train_and_quantize, write_json

from lambdaforge.local.sagemaker_executor import free_port

QUIET = {"POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_LOG_LEVEL": "ERROR",
         "POWERTOOLS_SERVICE_NAME": "inference", "POWERTOOLS_METRICS_NAMESPACE": "lambdaforge"}


def start_server(model: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, **QUIET}
    env.pop("MODEL_URI", None)
    proc = subprocess.Popen([str(Path(sys.executable).parent / "lambdaforge"), "serve", "--model", str(model),
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env,
                            cwd=ROOT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("lambdaforge serve did not start")


def soak(port: int, pid: int, seconds: float, concurrency: int, bad_share: float) -> dict[str, Any]:
    import importlib

    import psutil

    sys.path.insert(0, str(ROOT))
    suite: Any = importlib.import_module("tests.functional.test_bad_inputs")  # the project's bad-input cases
    # small bad requests only: the 11 and 20 MB ones measure the network, not the handler
    bad = [c for c in [*suite.COMMON, *suite.DIGITS] if len(c.body) < 100_000 and not c.chunked]
    good = suite.Case("good", json.dumps({"instances": [suite.ZERO]}).encode(), 200)
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < stop:
            case = rng.choice(bad) if rng.random() < bad_share else good
            t0 = time.perf_counter()
            try:
                conn.request(case.method, case.path, body=case.body or None,
                             headers={**case.headers, "Content-Length": str(len(case.body))})
                response = conn.getresponse()
                response.read()
                status = response.status
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            except OSError as exc:
                status = -1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                with lock:
                    errors.append(f"{case.name}: {type(exc).__name__}: {exc}")
            elapsed = (time.perf_counter() - t0) * 1000
            with lock:
                if case is good:
                    latencies.append(elapsed)
                if status not in (case.status, -1):
                    errors.append(f"{case.name}: {status}, expected {case.status}")
        conn.close()

    proc = psutil.Process(pid)
    samples: list[tuple[float, float]] = []
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        samples.append((time.monotonic() - started, proc.memory_info().rss / 2**20))
        time.sleep(0.5)
    for thread in threads:
        thread.join()
    first = [rss for t, rss in samples if t <= 10]
    last = [rss for t, rss in samples if t >= seconds - 10]
    ordered = sorted(latencies)
    return {
        "seconds": seconds, "concurrency": concurrency, "bad_share": bad_share,
        "good_requests": len(latencies), "requests_per_s": round(len(latencies) / (1 - bad_share) / seconds, 1),
        "errors": len(errors), "error_examples": errors[:10],
        "p50_ms": round(statistics.median(ordered), 2) if ordered else None,
        "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))], 2) if ordered else None,
        "rss_first_10s_mb": round(statistics.mean(first), 1), "rss_last_10s_mb": round(statistics.mean(last), 1),
        "rss_growth_pct": round((statistics.mean(last) / statistics.mean(first) - 1) * 100, 2),
        "rss_samples": [(round(t, 1), round(rss, 1)) for t, rss in samples],
    }


def plot(result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t, rss = zip(*result["rss_samples"], strict=True)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(t, rss)
    ax.set_xlabel("seconds")
    ax.set_ylabel("server RSS (MiB)")
    ax.set_title(f"soak: concurrency {result['concurrency']}, {result['errors']} errors, p50 {result['p50_ms']} ms, "
                 f"p99 {result['p99_ms']} ms, RSS {result['rss_growth_pct']:+.1f} %", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/soak.json"))
    parser.add_argument("--model", type=Path, default=None, help="a quantized digits model directory to serve")
    parser.add_argument("--workdir", type=Path, default=None, help="reuse trained models from here")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--bad-share", type=float, default=0.1)
    args = parser.parse_args()
    model = args.model
    if model is None:
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="lf-soak-"))
        model = train_and_quantize("digits", workdir, {"epochs": 10})[1]
    port = free_port()
    server = start_server(model, port)
    try:
        result = soak(port, server.pid, args.seconds, args.concurrency, args.bad_share)
    finally:
        server.terminate()
        server.wait(timeout=30)
    result = {"machine": machine(), "model": str(model), **result}
    write_json(args.out, result)
    plot(result, args.out.with_suffix(".png"))
    print(json.dumps({k: v for k, v in result.items() if k not in ("rss_samples", "machine")}, indent=2))
    if result["errors"] or result["rss_growth_pct"] > 5:
        raise SystemExit("soak: errors or RSS growth over 5 %")


if __name__ == "__main__":
    main()
