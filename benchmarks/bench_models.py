"""Model benchmark: torch eager fp32 vs onnxruntime fp32 vs the chosen INT8 model, per recipe.

One intra-op thread (Lambda below 1,769 MB has one vCPU), all measured in one run.
Text inputs are 128 real tokens (no padding), so every backend does the same work; typical
short tickets are measured separately (`b1_short`) because the runtime does not pad them.

    python benchmarks/bench_models.py --out benchmarks/results/models.json
"""

from __future__ import annotations

import argparse
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from common import machine, train_and_quantize, write_json

RUNS = {"b1": 200, "b8": 60}
LONG_TICKET = ("the invoice for my team subscription was charged twice this month and the refund "
               "never arrived although support promised it last week")


def _inputs(recipe_name: str, md: Any, batch: int, *, short: bool = False) -> dict[str, np.ndarray]:
    if recipe_name == "text":
        from lambdaforge.recipes.text import tokenize

        if short:
            texts = ["my package has not arrived, order 4471, please update me"] * batch
        else:
            words = LONG_TICKET.split(" ")
            texts = [" ".join(words[(i + j) % len(words)] for j in range(200)) for i in range(batch)]
        arrays = tokenize(texts)
        if not short:
            assert arrays["input_ids"].shape == (batch, 128), arrays["input_ids"].shape
            assert int(arrays["attention_mask"].sum()) == batch * 128  # real tokens, no padding
        return arrays
    with np.load(md.file(md.manifest.eval_file), allow_pickle=False) as npz:
        return {s.name: np.ascontiguousarray(npz[s.name][:batch]) for s in md.manifest.inputs}


def bench_recipe(name: str, fp32_dir: Path, int8_dir: Path) -> dict[str, Any]:
    import torch
    from safetensors.torch import load_file

    from lambdaforge.artifact import open_model_dir
    from lambdaforge.onnxsession import open_session
    from lambdaforge.quantize import QuantizationError
    from lambdaforge.recipes import get_recipe
    from lambdaforge.recipes.hparams import from_recorded
    from lambdaforge.timing import measure_ms

    torch.set_num_threads(1)
    fp32_md, int8_md = open_model_dir(fp32_dir), open_model_dir(int8_dir)
    recipe = get_recipe(name)
    hp = from_recorded(recipe, fp32_md.manifest.training.hyperparameters)
    model = recipe.build_model(len(fp32_md.manifest.labels), hp)
    model.load_state_dict(load_file(str(fp32_md.file("model.safetensors"))))
    model.eval()
    names = [s.name for s in recipe.input_specs()]
    ort_fp32, ort_int8 = (open_session(md.model_path, error=QuantizationError, what="this model")
                          for md in (fp32_md, int8_md))

    latency: dict[str, dict[str, dict[str, float]]] = {"torch_fp32": {}, "ort_fp32": {}, "ort_int8": {}}
    shapes = {"b1": (1, False), "b8": (8, False)}
    if name == "text":
        shapes["b1_short"] = (1, True)
    for key, (batch, short) in shapes.items():
        feed = _inputs(name, fp32_md, batch, short=short)
        tensors = [torch.from_numpy(feed[n]) for n in names]
        runs = RUNS.get(key, 200)
        with torch.inference_mode():
            latency["torch_fp32"][key] = measure_ms(partial(model, *tensors), runs=runs)
        latency["ort_fp32"][key] = measure_ms(partial(ort_fp32.run, None, feed), runs=runs)
        latency["ort_int8"][key] = measure_ms(partial(ort_int8.run, None, feed), runs=runs)
        print(f"{name} {key}: torch {latency['torch_fp32'][key]['p50']:.2f} ms, "
              f"ort fp32 {latency['ort_fp32'][key]['p50']:.2f} ms, int8 {latency['ort_int8'][key]['p50']:.2f} ms")
    metric = fp32_md.manifest.primary_metric
    quant = int8_md.manifest.quantization
    return {
        "latency_ms": {b: {k: {s: round(v, 4) for s, v in st.items() if s in ("p50", "p99")}
                           for k, st in per.items()} for b, per in latency.items()},
        "metric": {"name": metric, "fp32": fp32_md.manifest.metrics[metric],
                   "int8": int8_md.manifest.metrics[metric]},
        "size_bytes": {"onnx_fp32": fp32_md.model_path.stat().st_size,
                       "onnx_int8": int8_md.model_path.stat().st_size,
                       "torch": fp32_md.file("model.safetensors").stat().st_size},
        "quantization": {"chosen": quant.chosen if quant else None, "fallback": quant.fallback if quant else None},
        "speedup_int8_vs_torch": {k: round(latency["torch_fp32"][k]["p50"] / latency["ort_int8"][k]["p50"], 3)
                                  for k in shapes},
        "speedup_int8_vs_ort_fp32": {k: round(latency["ort_fp32"][k]["p50"] / latency["ort_int8"][k]["p50"], 3)
                                     for k in shapes},
        "metric_drop_points": round((fp32_md.manifest.metrics[metric] - int8_md.manifest.metrics[metric]) * 100, 3),
    }


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recipes = list(results["recipes"])
    fig, axes = plt.subplots(1, len(recipes), figsize=(5.5 * len(recipes), 4))
    axes = np.atleast_1d(axes)
    for ax, name in zip(axes, recipes, strict=True):
        lat = results["recipes"][name]["latency_ms"]
        keys = [k for k in ("b1", "b8") if k in lat["torch_fp32"]]
        x = np.arange(len(keys))
        for i, backend in enumerate(("torch_fp32", "ort_fp32", "ort_int8")):
            ax.bar(x + (i - 1) * 0.27, [lat[backend][k]["p50"] for k in keys], 0.27, label=backend)
        ax.set_xticks(x, [f"batch {k[1:]}" for k in keys])
        ax.set_ylabel("warm p50 latency (ms, 1 thread)")
        sub = " (sequence 128)" if name == "text" else ""
        ax.set_title(f"{name}{sub}")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/models.json"))
    parser.add_argument("--recipes", default="digits,text")
    parser.add_argument("--workdir", type=Path, default=None, help="reuse trained models from here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lf-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        results: dict[str, Any] = {"machine": machine(), "threads": 1, "recipes": {}}
        for name in args.recipes.split(","):
            fp32, int8 = train_and_quantize(name, workdir)
            results["recipes"][name] = bench_recipe(name, fp32, int8)
    write_json(args.out, results)
    plot(results, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
