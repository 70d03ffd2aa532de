"""Serving benchmark: cold start, memory, runtime payload, warm latency in process and over HTTP,
and a bounded load run on loopback. Everything is measured in one run.

- cold start: median of N fresh processes, process start to first prediction; our handler with the
  INT8 model against a torch eager handler in the style of AWS's SAM PyTorch template (same weights);
  peak RSS of each.
- payload: installed dependencies + model on disk, ours (the inference image's requirements for
  Lambda's Python 3.12, slimmed and stripped as the Dockerfile does, bytecode compiled by Python 3.12)
  against the torch handler's (its dependency closure as installed, bytecode included) for both
  recipes; each side's bytecode is also reported on its own.
- warm latency: the digits model, in process and through the local gateway (`lambdaforge serve`).
- load: at least 2,000 requests at concurrency 8 against 127.0.0.1 only; bounded in count and time.

    python benchmarks/bench_serving.py --out benchmarks/results/serving.json
    python benchmarks/bench_serving.py --out benchmarks/results/serving.json --plot-only   # re-plot the JSON

The figure (serving.png beside the JSON): cold start, peak RSS and runtime payload, ours against torch.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from common import ROOT, machine, machine_line, pyplot, read_json, train_and_quantize, write_json

from lambdaforge.bundle.build import image_env
from lambdaforge.local.sagemaker_executor import free_port

PREDICT_TEXT = {"instances": ["I was charged twice for my subscription this month"]}
QUIET = {"POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_LOG_LEVEL": "ERROR",
         "POWERTOOLS_SERVICE_NAME": "inference", "POWERTOOLS_METRICS_NAMESPACE": "lambdaforge",
         "OMP_NUM_THREADS": "1", "LAMBDAFORGE_THREADS": "1", "PYTHONWARNINGS": "ignore"}

COLD = r"""
import json, os, resource, sys, time
t_start = float(sys.argv[3])
sys.path[:0] = [sys.argv[1]]
import app
from lambdaforge.local.context import LocalLambdaContext
event = json.load(open(sys.argv[2]))
r = app.lambda_handler(event, LocalLambdaContext(function_name="bench"))
assert r["statusCode"] == 200, r
t_first = time.time()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": t_first - t_start, "peak_rss_mb": peak}))
"""


def _event(body: dict[str, Any], path: Path) -> Path:
    from lambdaforge.local.gateway import http_event

    path.write_text(json.dumps(http_event("POST", "/predict", {"content-type": "application/json"},
                                          json.dumps(body).encode())))
    return path


IMAGE_PYTHON = ROOT / ".venv-image" / "bin" / "python"


def cold_start(code_dir: Path, event: Path, env: dict[str, str], runs: int, python: str = sys.executable,
               extra_path: str = "") -> dict[str, Any]:
    samples = []
    for _ in range(runs):
        t0 = time.time()
        run_env = {**os.environ, **QUIET, **env}
        if extra_path:
            run_env["PYTHONPATH"] = extra_path
        proc = subprocess.run([python, "-c", COLD, str(code_dir), str(event), repr(t0)], capture_output=True,
                              text=True, env=run_env, check=False, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        samples.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return {"median_s": statistics.median(s["seconds"] for s in samples),
            "peak_rss_mb": statistics.median(s["peak_rss_mb"] for s in samples),
            "runs": [round(s["seconds"], 3) for s in samples]}


def _closure(names: list[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen.add(name)
        for req in dist.requires or []:
            if "extra ==" in req:
                continue
            todo.append(re.split(r"[\s;<>=!~\[(]", req, maxsplit=1)[0])
    return seen


def installed_mb(names: list[str]) -> tuple[float, float]:
    """(on-disk size, of which bytecode) of the distributions' installed files, in MiB.

    Sizes come from the disk, not from RECORD: RECORD lists the .pyc files pip compiled without a
    size, and our side counts its bytecode too.
    """
    total = pyc = 0
    for name in _closure(names):
        for f in metadata.distribution(name).files or []:
            path = Path(str(f.locate()))
            if path.is_file():
                size = path.stat().st_size
                total += size
                pyc += size if path.suffix == ".pyc" else 0
    return total / 2**20, pyc / 2**20


def payloads(models: dict[str, tuple[Path, Path]]) -> dict[str, dict[str, float]]:
    """Each recipe's runtime payload in MiB, ours and torch's, with the budget ours is held to."""
    from lambdaforge.bundle.measure import payload

    out: dict[str, dict[str, float]] = {}
    torch_deps = {"digits": ["torch", "numpy", "safetensors"],
                  "text": ["torch", "numpy", "safetensors", "transformers", "tokenizers"]}
    cache = Path.home() / ".cache" / "lambdaforge"
    python = str(IMAGE_PYTHON) if IMAGE_PYTHON.exists() else None  # the image's Python compiles our bytecode
    for recipe, (fp32, int8) in models.items():
        ours = payload(ROOT, "inference", int8, cache, python=python)
        torch_deps_mb, torch_pyc_mb = installed_mb(torch_deps[recipe])
        torch_model_mb = (fp32 / "model.safetensors").stat().st_size / 2**20
        out[recipe] = {"ours": round(ours.total_bytes / 2**20, 2), "torch": round(torch_deps_mb + torch_model_mb, 2),
                       "ours_deps": round(ours.deps_bytes / 2**20, 2), "ours_model": round(ours.model_bytes / 2**20, 2),
                       "ours_bytecode": round(ours.bytecode_bytes / 2**20, 2), "torch_bytecode": round(torch_pyc_mb, 2),
                       "torch_deps": round(torch_deps_mb, 2), "torch_model": round(torch_model_mb, 2),
                       "ours_budget": round(ours.budget_bytes / 2**20, 2)}
    return out


def _connect(port: int) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as curl and urllib3 do
    return conn


def _request(conn: http.client.HTTPConnection, body: bytes) -> int:
    conn.request("POST", "/predict", body=body, headers={"content-type": "application/json"})
    resp = conn.getresponse()
    resp.read()
    return resp.status


def warm_latency(model: Path, body: dict[str, Any], runs: int, url_port: int) -> dict[str, dict[str, float]]:
    from lambdaforge import runtime
    from lambdaforge.local.gateway import http_event
    from lambdaforge.local.inprocess import InProcessFunction
    from lambdaforge.timing import measure_ms

    os.environ.update(QUIET)
    os.environ["MODEL_URI"] = str(model)
    runtime.reset()
    fn = InProcessFunction(ROOT / "functions" / "inference", env=QUIET)
    import logging

    logging.getLogger("inference").setLevel(logging.ERROR)
    raw = json.dumps(body).encode()
    event = http_event("POST", "/predict", {"content-type": "application/json"}, raw)
    assert fn(event)["statusCode"] == 200
    in_process = measure_ms(lambda: fn(event), runs=runs, warmup=20)
    conn = _connect(url_port)
    over_http = measure_ms(lambda: _request(conn, raw), runs=runs, warmup=20)
    conn.close()
    return {"in_process": {k: round(v, 4) for k, v in in_process.items()},
            "http": {k: round(v, 4) for k, v in over_http.items()}}


def load_run(port: int, body: dict[str, Any], requests_total: int, concurrency: int,
             max_seconds: float) -> dict[str, Any]:
    raw = json.dumps(body).encode()
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    counter = iter(range(requests_total))
    deadline = time.time() + max_seconds

    def worker() -> None:
        nonlocal errors
        conn = _connect(port)
        for _ in counter:
            if time.time() > deadline:
                break
            t0 = time.perf_counter()
            try:
                ok = _request(conn, raw) == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = _connect(port)
            with lock:
                latencies.append((time.perf_counter() - t0) * 1000)
                errors += 0 if ok else 1
        conn.close()

    t0 = time.time()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.time() - t0
    return {"requests": len(latencies), "errors": errors, "concurrency": concurrency,
            "rps": round(len(latencies) / elapsed, 1), "p50_ms": round(float(np.percentile(latencies, 50)), 3),
            "p99_ms": round(float(np.percentile(latencies, 99)), 3), "seconds": round(elapsed, 2)}


def task_root(dst: Path, python: str, sources: list[Path]) -> Path:
    """A function's task root as its image holds it: the code copied in and compiled to bytecode the way the
    Dockerfile does (Lambda's task root is read-only, so nothing is compiled there at run time)."""
    import shutil

    dst.mkdir(parents=True)
    for src in sources:
        if src.is_dir():
            shutil.copytree(src, dst / src.name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst / src.name)
    subprocess.run([python, "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash", str(dst)], check=True)
    return dst


def cold_starts(models: dict[str, tuple[Path, Path]], tmp: Path, runs: int) -> dict[str, Any]:
    """Ours (image-equivalent venv, with and without X-Ray) against the torch handler, same event and model.
    Both handlers run from a task root compiled as an image is (the same compileall for both)."""
    text_fp32, text_int8 = models["text"]
    event = _event(PREDICT_TEXT, tmp / "event.json")
    # Ours runs where the image's dependencies are exactly installed (the image-equivalent venv,
    # Python 3.12 like the Lambda image); torch runs in the dev venv that has it.
    python = str(IMAGE_PYTHON) if IMAGE_PYTHON.exists() else sys.executable
    ours_root = task_root(tmp / "task-ours", python,
                          [ROOT / "src" / "lambdaforge", ROOT / "functions" / "inference" / "app.py"])
    ours_env = {**image_env(ROOT, "inference"), "MODEL_URI": str(text_int8)}  # the image's ENV, our model
    print(f"cold starts (ours, {python}) ...")
    ours = cold_start(ours_root, event, ours_env, runs, python, str(ours_root))
    print("cold starts (ours, X-Ray SDK loaded as with tracing active) ...")
    xray = cold_start(ours_root, event,
                      {**ours_env, "POWERTOOLS_TRACE_DISABLED": "false", "LAMBDA_TASK_ROOT": str(ours_root),
                       "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR"}, runs, python, str(ours_root))
    print("cold starts (torch) ...")
    # the torch handler gets our image's OpenBLAS setting too, so that only the handlers differ
    torch_env = {"TORCH_MODEL_DIR": str(text_fp32), "OPENBLAS_NUM_THREADS": ours_env["OPENBLAS_NUM_THREADS"]}
    torch_root = task_root(tmp / "task-torch", sys.executable,
                           [p for p in (ROOT / "benchmarks" / "torch_handler").iterdir() if p.suffix == ".py"])
    torch_cs = cold_start(torch_root, event, torch_env, runs)
    return {
        "cold_start_s": {"ours": round(ours["median_s"], 3), "torch": round(torch_cs["median_s"], 3),
                         "ours_with_xray": round(xray["median_s"], 3)},
        "cold_start_python": {"ours": python, "torch": sys.executable},
        "peak_rss_mb": {"ours": round(ours["peak_rss_mb"], 1), "torch": round(torch_cs["peak_rss_mb"], 1)},
        "cold_start_runs_s": {"ours": ours["runs"], "torch": torch_cs["runs"], "ours_with_xray": xray["runs"]},
    }


def served(model: Path, warm_runs: int, load_requests: int) -> dict[str, Any]:
    """Warm latency and the load run against `lambdaforge serve` on a free port."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "lambdaforge.cli", "serve", "--model", str(model),
                               "--port", str(port)], env={**os.environ, **QUIET}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        from lambdaforge.runtime import get_predictor

        body = get_predictor(str(model)).sample_request()
        print("warm latency ...")
        warm = warm_latency(model, body, warm_runs, port)
        print("load run ...")
        return {"warm_ms": warm, "load": load_run(port, body, max(load_requests, 2000), 8, max_seconds=300)}
    finally:
        server.terminate()
        server.wait(timeout=30)


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    cs, rss = results["cold_start_s"], results["peak_rss_mb"]
    return {
        "cold_start_speedup": round(cs["torch"] / cs["ours"], 2),
        "peak_rss_fraction": round(rss["ours"] / rss["torch"], 3),
        "payload_fraction": {r: round(p["ours"] / p["torch"], 4) for r, p in results["payload_mb"].items()},
        "http_overhead_p50_ms": round(results["warm_ms"]["http"]["p50"] - results["warm_ms"]["in_process"]["p50"], 3),
    }


OURS, TORCH = "tab:blue", "tab:orange"


def _cold_panel(ax: Any, results: dict[str, Any]) -> None:
    cs, runs = results["cold_start_s"], results.get("cold_start_runs_s", {})
    keys = [k for k in ("ours", "ours_with_xray", "torch") if k in cs]
    names = {"ours": "ours\n(INT8, onnxruntime)", "ours_with_xray": "ours\n+ X-Ray SDK",
             "torch": "torch handler\n(fp32, eager)"}
    colors = {"ours": OURS, "ours_with_xray": OURS, "torch": TORCH}
    x = np.arange(len(keys))
    ax.bar(x, [cs[k] for k in keys], 0.6, color=[colors[k] for k in keys], alpha=0.55,
                  hatch=["//" if k == "ours_with_xray" else "" for k in keys], label="median")
    for i, k in enumerate(keys):
        points = runs.get(k) or []
        if points:  # each fresh process, spread sideways so that equal runs stay visible
            jitter = np.linspace(-0.18, 0.18, len(points)) if len(points) > 1 else np.zeros(1)
            ax.scatter(i + jitter, points, s=14, color="black", zorder=3,
                       label=f"each run (n={len(points)})" if i == 0 else None)
    tops = [max([cs[k], *(runs.get(k) or [])]) for k in keys]
    for i, k in enumerate(keys):  # above the highest run, so that the points do not hide the figure
        ax.annotate(f"median {cs[k]:.2f} s", (i, tops[i]), xytext=(0, 4), textcoords="offset points",
                    ha="center", fontsize=8)
    ax.set_xticks(x, [names[k] for k in keys], fontsize=8)
    ax.set_ylabel("cold start: process start to first prediction (s)")
    ax.set_ylim(0, max(tops) * 1.15)
    ratio = cs["torch"] / cs["ours"]
    recipe = results.get("cold_start_recipe", "")
    ax.set_title(f"cold start{f' ({recipe})' if recipe else ''}: {ratio:.1f}x faster than torch", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")


def _rss_panel(ax: Any, results: dict[str, Any]) -> None:
    rss = results["peak_rss_mb"]
    bars = ax.bar([0, 1], [rss["ours"], rss["torch"]], 0.6, color=[OURS, TORCH], alpha=0.8)
    ax.bar_label(bars, labels=[f"{rss['ours']:.0f} MiB", f"{rss['torch']:.0f} MiB"], padding=2, fontsize=8)
    ax.set_xticks([0, 1], ["ours", "torch handler"], fontsize=8)
    ax.set_ylabel("peak RSS at first prediction (MiB)")
    ax.set_ylim(0, max(rss.values()) * 1.15)
    ax.set_title(f"peak memory: {rss['ours'] / rss['torch']:.2f} of torch's", fontsize=10)


def _payload_panel(ax: Any, results: dict[str, Any]) -> None:
    payload = results["payload_mb"]
    recipes = list(payload)
    x = np.arange(len(recipes))
    width = 0.38
    sides = ((-width / 2, "ours", OURS, "ours"), (width / 2, "torch", TORCH, "torch handler"))
    for offset, side, color, label in sides:
        deps = [payload[r].get(f"{side}_deps", payload[r][side]) for r in recipes]
        model = [payload[r].get(f"{side}_model", 0.0) for r in recipes]
        ax.bar(x + offset, deps, width, color=color, alpha=0.8, label=f"{label}: dependencies + code")
        bars = ax.bar(x + offset, model, width, bottom=deps, color=color, alpha=0.35, hatch="xx",
                      label=f"{label}: model")
        ax.bar_label(bars, labels=[f"{payload[r][side]:.0f}" for r in recipes], padding=2, fontsize=8)
    budgets = {payload[r]["ours_budget"] for r in recipes if "ours_budget" in payload[r]}
    if not budgets:  # results written before the budget was recorded: the one payload() measured against
        from lambdaforge.bundle.measure import DEFAULT_BUDGET_MB

        budgets = {float(DEFAULT_BUDGET_MB)}
    for budget in sorted(budgets):
        ax.axhline(budget, color="tab:red", linestyle="--", linewidth=1, label=f"budget for ours ({budget:g} MiB)")
    ax.set_xticks(x, recipes)
    ax.set_xlabel("recipe")
    ax.set_ylabel("runtime payload on disk (MiB)")
    ax.set_ylim(0, max(payload[r]["torch"] for r in recipes) * 1.15)
    fractions = ", ".join(f"{r} {payload[r]['ours'] / payload[r]['torch']:.2f}" for r in recipes)
    ax.set_title(f"image payload: ours / torch = {fractions}", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")


def plot(results: dict[str, Any], path: Path) -> None:
    """Cold start (median bars, each run as a point), peak RSS and payload, ours against the torch handler."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    _cold_panel(axes[0], results)
    _rss_panel(axes[1], results)
    _payload_panel(axes[2], results)
    fig.suptitle("serving: our Lambda handler (INT8 ONNX, no torch) vs a torch eager handler, same weights",
                 fontsize=11)
    footer = machine_line(results.get("machine", {}))
    if footer:
        fig.text(0.5, 0.01, footer, ha="center", fontsize=7, color="dimgray")
    fig.tight_layout(rect=(0, 0.03, 1, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/serving.json"))
    parser.add_argument("--workdir", type=Path, default=None, help="reuse trained models from here")
    parser.add_argument("--cold-runs", type=int, default=9, help="fresh processes per handler (>= 5)")
    parser.add_argument("--warm-runs", type=int, default=500)
    parser.add_argument("--load-requests", type=int, default=2000)
    parser.add_argument("--plot-only", action="store_true", help="re-plot the existing --out JSON, measure nothing")
    args = parser.parse_args()
    if args.plot_only:
        plot(read_json(args.out), args.out.with_suffix(".png"))
        return
    with tempfile.TemporaryDirectory(prefix="lf-bench-") as tmp_name:
        tmp = Path(tmp_name)
        models = {r: train_and_quantize(r, args.workdir or tmp) for r in ("digits", "text")}
        results: dict[str, Any] = {"machine": machine(), "cold_start_recipe": "text", "warm_recipe": "digits"}
        results.update(cold_starts(models, tmp, args.cold_runs))
        print("payloads ...")
        results["payload_mb"] = payloads(models)
        results.update(served(models["digits"][1], args.warm_runs, args.load_requests))
    results["ratios"] = ratios(results)
    print(json.dumps(results["ratios"], indent=2))
    write_json(args.out, results)
    plot(results, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
