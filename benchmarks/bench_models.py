"""Model benchmark: torch eager fp32 vs onnxruntime fp32 vs the chosen INT8 model, per recipe.

One intra-op thread (Lambda below 1,769 MB has one vCPU), all measured in one run.
Text inputs are 128 real tokens (no padding), so every backend does the same work; typical
short tickets are measured separately (`b1_short`) because the runtime does not pad them.

Beside that, for each recipe: every candidate `auto` built, timed interleaved at batch 1 with its
interval; the host's limit (the model's GEMM MACs over the host's best GEMM rate, INT8 or fp32,
measured here on the model's own GEMM shapes, in the same interleaved rounds as the shipped model,
whose fraction of the limit is the median of the per-round ratios), the fraction each variant
reaches, and where the shipped model's time goes (onnxruntime's profiler); the
default and exact (U8U8) kernel paths' top-1 agreement; and, for text, a 3-layer encoder beside
the 6-layer one. Once per run: onnxruntime's fused kernels that lambdaforge turns off, against what
they replace (`slow_fusions`), and one layer's attention core against onnxruntime's fused
MultiHeadAttention (`attention_kernels`).

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
IR_VERSION = 8  # the TorchScript exporter's: onnx's own default is newer than the images' onnxruntime loads
LONG_TICKET = ("the invoice for my team subscription was charged twice this month and the refund "
               "never arrived although support promised it last week")


def _save_graph(graph: Any, path: Path, *, contrib: bool = False) -> Path:
    """A hand-built graph saved as the export writes one: opset 17 (and com.microsoft for fused operators), IR 8."""
    import onnx
    from onnx import helper

    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("com.microsoft", 1)] if contrib else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = IR_VERSION
    onnx.save(model, str(path))
    return path


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


def bench_recipe(name: str, fp32_dir: Path, int8_dir: Path, work: Path) -> dict[str, Any]:
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
    # What shipped before ISA-robust quantization: full 8-bit u8s8 dynamic weights on the unfused graph.
    from lambdaforge.quantize import engine
    from lambdaforge.quantize.config import DynamicQuantConfig

    legacy_path = engine.quantize_dynamic(fp32_md.model_path, work / f"{name}-legacy.onnx",
                                          DynamicQuantConfig(reduce_range=False))
    # ... in a session as the runtime made it then: onnxruntime's default fusions, SkipLayerNormalization included.
    ort_legacy = _default_session(legacy_path)

    latency: dict[str, dict[str, dict[str, float]]] = {"torch_fp32": {}, "ort_fp32": {}, "ort_int8": {},
                                                       "ort_int8_legacy": {}}
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
        latency["ort_int8_legacy"][key] = measure_ms(partial(ort_legacy.run, None, feed), runs=runs)
        print(f"{name} {key}: torch {latency['torch_fp32'][key]['p50']:.2f} ms, "
              f"ort fp32 {latency['ort_fp32'][key]['p50']:.2f} ms, int8 {latency['ort_int8'][key]['p50']:.2f} ms, "
              f"legacy int8 {latency['ort_int8_legacy'][key]['p50']:.2f} ms")
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
        "speedup_int8_vs_legacy_int8": {k: round(latency["ort_int8_legacy"][k]["p50"] / latency["ort_int8"][k]["p50"],
                                                 3) for k in shapes},
        "metric_drop_points": round((fp32_md.manifest.metrics[metric] - int8_md.manifest.metrics[metric]) * 100, 3),
        "int8_top1_agreement_with_fp32": int8_md.manifest.metrics.get("int8_agreement"),
        "scheme": quant.scheme if quant else None,
        # a GEMM-bound model only: digits' GEMMs are too small for a rate (call overhead is most of their time)
        **({"host_limit": host_limit(name, fp32_dir, int8_dir, work, latency)} if name == "text" else {}),
        "kernel_paths": kernel_paths(int8_dir),
        "candidates": candidates(int8_dir),
    }


def _default_session(path: Path) -> Any:
    """A session with onnxruntime's own defaults (every fusion on), one thread: the runtime before #14."""
    import onnxruntime as ort

    from lambdaforge.onnxsession import PROVIDERS, session_options

    return ort.InferenceSession(str(path), session_options(), providers=PROVIDERS)


def slow_fusions(work: Path) -> dict[str, Any]:
    """Why `lambdaforge.onnxsession.SLOW_FUSIONS` are off: each fused kernel against what it replaces, at the
    text encoder's shapes (batch 1, 128 tokens), timed interleaved in this run. A ratio below 1 on some later
    onnxruntime says the fusion pays again."""
    from onnx import TensorProto, helper, numpy_helper

    from lambdaforge.onnxsession import SLOW_FUSIONS, open_session
    from lambdaforge.quantize import QuantizationError
    from lambdaforge.timing import interleaved_ms

    rng = np.random.default_rng(0)

    def graph(name: str, hidden: int, nodes: list[Any], inputs: list[str], inits: dict[str, int]) -> Path:
        path = work / f"kernel-{name}.onnx"
        g = helper.make_graph(
            nodes, name, [helper.make_tensor_value_info(i, TensorProto.FLOAT, [1, 128, hidden]) for i in inputs],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 128, hidden])],
            [numpy_helper.from_array(rng.normal(size=n).astype(np.float32), k) for k, n in inits.items()])
        return _save_graph(g, path, contrib=True)

    ms = "com.microsoft"
    cases = {
        "SkipLayerNormFusion": (
            graph("sln", 384, [helper.make_node("SkipLayerNormalization", ["x", "s", "g", "b"], ["y"], domain=ms,
                                                epsilon=1e-12)], ["x", "s"], {"g": 384, "b": 384}),
            graph("add-ln", 384, [helper.make_node("Add", ["x", "s"], ["t"]),
                                  helper.make_node("LayerNormalization", ["t", "g", "b"], ["y"], axis=-1,
                                                   epsilon=1e-12)], ["x", "s"], {"g": 384, "b": 384}), 384),
        # unfused: the bias Add and Gelu (an INT8 GEMM takes the bias itself, so there Gelu stands alone: cheaper)
        "BiasGeluFusion": (
            graph("biasgelu", 1536, [helper.make_node("BiasGelu", ["x", "b"], ["y"], domain=ms)], ["x"],
                  {"b": 1536}),
            graph("add-gelu", 1536, [helper.make_node("Add", ["x", "b"], ["t"]),
                                     helper.make_node("Gelu", ["t"], ["y"], domain=ms)], ["x"], {"b": 1536}), 1536),
    }
    calls = {}
    for fusion, (fused, plain, hidden) in cases.items():
        for kind, path in (("fused", fused), ("unfused", plain)):
            sess = open_session(path, error=QuantizationError)
            feed = {i.name: rng.normal(size=(1, 128, hidden)).astype(np.float32) for i in sess.get_inputs()}
            calls[f"{fusion}/{kind}"] = partial(sess.run, None, feed)
    lat = interleaved_ms(calls, rounds=40, block=10)
    out = {}
    for fusion in cases:
        fused_us, plain_us = lat[f"{fusion}/fused"]["p50"] * 1000, lat[f"{fusion}/unfused"]["p50"] * 1000
        out[fusion] = {"fused_us": round(fused_us, 1), "unfused_us": round(plain_us, 1),
                       "fused_over_unfused": round(fused_us / plain_us, 3), "disabled": fusion in SLOW_FUSIONS}
        print(f"{fusion}: fused {fused_us:.1f} us, unfused {plain_us:.1f} us ({fused_us / plain_us:.2f}x)")
    return out


def attention_kernels(work: Path, heads: int = 12, hidden: int = 384, tokens: int = 128) -> dict[str, Any]:
    """One layer's attention core (after the Q, K, V projections, before the output one) at the text encoder's
    shapes, as the shipped graph computes it (reshapes, transposes, scaled MatMul, additive mask, Softmax,
    MatMul) against onnxruntime's fused MultiHeadAttention, with a key padding mask and without one (its
    fastest path, for a batch with no padding), timed interleaved: what a fused attention kernel could save."""
    from onnx import TensorProto, helper, numpy_helper

    from lambdaforge.onnxsession import open_session
    from lambdaforge.quantize import QuantizationError
    from lambdaforge.timing import interleaved_ms

    rng = np.random.default_rng(0)
    ms, head = "com.microsoft", hidden // heads

    def value(name: str, kind: int, shape: list[int]) -> Any:
        return helper.make_tensor_value_info(name, kind, shape)

    qkv = [value(n, TensorProto.FLOAT, [1, tokens, hidden]) for n in "qkv"]
    mask = value("mask", TensorProto.FLOAT, [1, 1, tokens, tokens])
    pad = value("pad", TensorProto.INT32, [1, tokens])
    consts = [numpy_helper.from_array(np.array([0, 0, heads, head], np.int64), "heads"),
              numpy_helper.from_array(np.array([0, 0, hidden], np.int64), "flat"),
              numpy_helper.from_array(np.array(1 / np.sqrt(head), np.float32), "scale")]
    unfused = [helper.make_node("Reshape", ["q", "heads"], ["q4"]),
               helper.make_node("Transpose", ["q4"], ["qt"], perm=[0, 2, 1, 3]),
               helper.make_node("Reshape", ["k", "heads"], ["k4"]),
               helper.make_node("Transpose", ["k4"], ["kt"], perm=[0, 2, 3, 1]),
               helper.make_node("Reshape", ["v", "heads"], ["v4"]),
               helper.make_node("Transpose", ["v4"], ["vt"], perm=[0, 2, 1, 3]),
               helper.make_node("MatMul", ["qt", "kt"], ["s0"]), helper.make_node("Mul", ["s0", "scale"], ["s1"]),
               helper.make_node("Add", ["s1", "mask"], ["s2"]), helper.make_node("Softmax", ["s2"], ["p"], axis=-1),
               helper.make_node("MatMul", ["p", "vt"], ["o4"]),
               helper.make_node("Transpose", ["o4"], ["ot"], perm=[0, 2, 1, 3]),
               helper.make_node("Reshape", ["ot", "flat"], ["y"])]
    variants = {
        "unfused": (unfused, [*qkv, mask], consts),
        "mha_padding_mask": ([helper.make_node("MultiHeadAttention", ["q", "k", "v", "", "pad"], ["y"], domain=ms,
                                               num_heads=heads)], [*qkv, pad], []),
        "mha_no_mask": ([helper.make_node("MultiHeadAttention", ["q", "k", "v"], ["y"], domain=ms,
                                          num_heads=heads)], qkv, []),
    }
    feed = {n: rng.normal(size=(1, tokens, hidden)).astype(np.float32) for n in "qkv"}
    feed |= {"mask": np.zeros((1, 1, tokens, tokens), np.float32), "pad": np.ones((1, tokens), np.int32)}
    calls, outputs = {}, {}
    for name, (nodes, inputs, inits) in variants.items():
        graph = helper.make_graph(nodes, name, inputs, [value("y", TensorProto.FLOAT, [1, tokens, hidden])], inits)
        path = _save_graph(graph, work / f"attention-{name}.onnx", contrib=True)
        sess = open_session(path, error=QuantizationError)
        sess_feed = {i.name: feed[i.name] for i in sess.get_inputs()}
        outputs[name] = sess.run(None, sess_feed)[0]
        calls[name] = partial(sess.run, None, sess_feed)
    lat = interleaved_ms(calls, rounds=40, block=10)
    base = lat["unfused"]["p50"]
    out: dict[str, Any] = {}
    for name in variants:
        out[name] = {"us": round(lat[name]["p50"] * 1000, 1), "over_unfused": round(lat[name]["p50"] / base, 3),
                     "max_abs_diff": float(np.abs(outputs[name] - outputs["unfused"]).max())}
        print(f"attention core {name}: {lat[name]['p50'] * 1000:.1f} us ({lat[name]['p50'] / base:.2f}x unfused)")
    return out


def _static_shapes(path: Path, feed: dict[str, np.ndarray]) -> Any:
    """The graph with every value's shape inferred for this feed's shapes (onnxruntime's symbolic inference)."""
    import onnx
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    model = onnx.load(str(path))
    for inp in model.graph.input:
        for dim, size in zip(inp.type.tensor_type.shape.dim, feed[inp.name].shape, strict=True):
            dim.ClearField("dim_param")
            dim.dim_value = int(size)
    return SymbolicShapeInference.infer_shapes(model, auto_merge=True)


def gemm_work(path: Path, feed: dict[str, np.ndarray]) -> tuple[int, int, list[tuple[int, int, int]]]:
    """The model's multiply-accumulates for this feed: in GEMMs (and convs) with a constant weight, which INT8
    quantizes, and in the others (attention's Q x K and A x V stay fp32); and the (M, K, N) of the first."""
    model = _static_shapes(path, feed)
    g = model.graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*g.value_info, *g.input, *g.output]}
    consts = {i.name: list(i.dims) for i in g.initializer}
    shapes.update(consts)
    weight_macs, other_macs, weight_gemms = 0, 0, []
    for node in g.node:
        if node.op_type not in ("MatMul", "Gemm", "Conv"):
            continue
        a, out = shapes.get(node.input[0]), shapes.get(node.output[0])
        if not a or not out or 0 in a or 0 in out:
            raise RuntimeError(f"{path}: the shapes of {node.name or node.op_type} are not known for this feed")
        attrs = {at.name: at.i for at in node.attribute}
        if node.op_type == "Conv":
            macs = int(np.prod(out)) * int(np.prod(consts[node.input[1]][1:]))
        else:
            k = a[-2] if node.op_type == "Gemm" and attrs.get("transA") else a[-1]
            macs = int(np.prod(out)) * k
        if node.input[1] in consts:
            weight_macs += macs
            w = consts[node.input[1]]
            if node.op_type != "Conv" and len(w) == 2:
                k, n = (w[1], w[0]) if node.op_type == "Gemm" and attrs.get("transB") else (w[0], w[1])
                weight_gemms.append((macs // (k * n), k, n))
        else:
            other_macs += macs
    return weight_macs, other_macs, weight_gemms


def _gemm_graph(gemms: list[tuple[int, int, int]], path: Path, seed: int) -> tuple[Path, dict[str, np.ndarray], int]:
    """A graph of just these GEMMs (x @ W, each with its own weights), its feed and its MACs."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits, inputs, outputs, feed = [], [], [], [], {}
    for i, (m, k, n) in enumerate(gemms):
        inputs.append(helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, [m, k]))
        outputs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, [m, n]))
        inits.append(numpy_helper.from_array(rng.normal(size=(k, n)).astype(np.float32), f"w{i}"))
        nodes.append(helper.make_node("MatMul", [f"x{i}", f"w{i}"], [f"y{i}"], name=f"mm{i}"))
        feed[f"x{i}"] = rng.normal(size=(m, k)).astype(np.float32)
    _save_graph(helper.make_graph(nodes, "gemms", inputs, outputs, inits), path)
    return path, feed, sum(m * k * n for m, k, n in gemms)


def gemm_rounds(gemms: list[tuple[int, int, int]], work: Path, shipped: Path,
                shipped_feed: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """The host's GEMM rate on the model's own weight GEMMs, in fp32 and in the INT8 the model ships (7-bit u8s8
    dynamic), timed in the same interleaved rounds as the shipped model itself, so that the fraction of the
    limit is a ratio measured side by side. Two graphs per precision: each distinct shape once (its weights
    stay in cache) and every GEMM of the model with its own weights (the model's working set); the faster
    one in a round is that round's rate. Returns each callable's per-round ms and each graph's MACs."""
    from lambdaforge.onnxsession import open_session
    from lambdaforge.quantize import QuantizationError, engine
    from lambdaforge.quantize.config import DynamicQuantConfig
    from lambdaforge.timing import interleaved_samples

    calls: dict[str, Any] = {}
    macs: dict[str, int] = {}
    for seed, (kind, shapes) in enumerate((("shapes", sorted(set(gemms))), ("model", gemms))):
        fp32, feed, n = _gemm_graph(shapes, work / f"gemms-{kind}.onnx", seed)
        raw = engine.quantize_dynamic(fp32, work / f"gemms-{kind}-int8.raw.onnx", DynamicQuantConfig())
        int8 = engine.preoptimize(raw, work / f"gemms-{kind}-int8.onnx")
        for precision, path in (("fp32", fp32), ("int8", int8)):
            calls[f"{precision}/{kind}"] = partial(open_session(path, error=QuantizationError).run, None, feed)
            macs[f"{precision}/{kind}"] = n
    model = open_session(shipped, error=QuantizationError)
    calls["shipped"] = partial(model.run, None, {i.name: shipped_feed[i.name] for i in model.get_inputs()})
    return interleaved_samples(calls, rounds=40, block=5), macs


WEIGHT_GEMM_OPS = ("DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMulInteger", "DynamicQuantizeLinear",
                   "QGemm", "QLinearMatMul")
# Operators that only move data or compute shapes. A static-shape graph or a leaner runtime could drop the shape
# work; a fused attention kernel moves its transposes inside itself rather than removing them (measured in
# attention_kernels). The arithmetic (every other operator) any implementation on these kernels keeps.
LAYOUT_OPS = ("Transpose", "Reshape", "Shape", "Unsqueeze", "Squeeze", "Concat", "Slice", "Cast", "Expand", "Where",
              "Equal", "Range", "And", "GreaterOrEqual", "Flatten", "Gather", "GatherElements", "ConstantOfShape")


def arithmetic_share(kernel_ms_per_op: dict[str, float]) -> float:
    """The share of the kernel time spent in arithmetic (not in LAYOUT_OPS). The shipped model's fraction of the
    limit divided by it estimates the fraction it would reach if all of the layout operators' time were gone and
    the time between kernels shrank in proportion: an optimistic estimate of what graph rewrites on these kernels
    could reach, not a bound (no rewrite measured here removes all of it)."""
    total = sum(kernel_ms_per_op.values())
    if total <= 0:
        raise ValueError("an empty profile")
    return sum(v for k, v in kernel_ms_per_op.items() if k not in LAYOUT_OPS) / total


def op_profile(path: Path, feed: dict[str, np.ndarray], work: Path, runs: int = 60) -> dict[str, Any]:
    """Where the shipped model's time goes at this feed: onnxruntime's profiler, kernel time per operator type
    per run (the weight GEMMs with their activation quantization, and everything else)."""
    import json

    from lambdaforge.onnxsession import make_session, session_options

    warm = 10
    options = session_options()
    options.enable_profiling = True
    options.profile_file_prefix = str(work / "ort-profile")
    sess = make_session(path, options)
    feed = {i.name: feed[i.name] for i in sess.get_inputs()}
    for _ in range(warm + runs):
        sess.run(None, feed)
    profile = Path(sess.end_profiling())
    events = json.loads(profile.read_text())
    profile.unlink()
    starts = sorted(e["ts"] for e in events if e.get("name") == "model_run")
    cutoff = starts[warm]  # the warm-up runs (the first one cold) are not counted
    runs_ms = [e["dur"] / 1000 for e in events if e.get("name") == "model_run" and e["ts"] >= cutoff]
    per_op: dict[str, float] = {}
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time") and event["ts"] >= cutoff:
            op = event["args"]["op_name"]
            per_op[op] = per_op.get(op, 0.0) + event["dur"] / runs / 1000
    gemm = sum(v for k, v in per_op.items() if k in WEIGHT_GEMM_OPS)
    return {"kernel_ms_per_op": {k: round(v, 3) for k, v in sorted(per_op.items(), key=lambda kv: -kv[1])},
            "weight_gemm_ms": round(gemm, 3), "other_ms": round(sum(per_op.values()) - gemm, 3),
            "layout_ms": round(sum(v for k, v in per_op.items() if k in LAYOUT_OPS), 3),
            "arithmetic_share": round(arithmetic_share(per_op), 3),
            # the profiler's own cost shows as the gap between this and the unprofiled latency
            "profiled_run_ms": round(float(np.median(runs_ms)), 3) if runs_ms else None}


def candidates(int8_dir: Path) -> list[dict[str, Any]]:
    """Every candidate of the quantization report, with its latency interval (measured side by side there)."""
    import json

    report = json.loads((int8_dir / "quantization_report.json").read_text())
    keep = ("name", "scheme", "passed", "size_bytes", "latency_ms_p50", "latency_ms_lo", "latency_ms_hi", "metric",
            "agreement", "cosine_mean", "cosine_min", "exact_agreement", "fused_ops", "reason")
    return [{k: c.get(k) for k in keep} for c in [report["fp32"], *report["candidates"]]]


def kernel_paths(int8_dir: Path) -> dict[str, Any]:
    """Top-1 agreement of the shipped model's default kernel path and the exact U8U8 path on its held-out rows."""
    from lambdaforge.artifact import open_model_dir
    from lambdaforge.onnxsession import open_session, predict_batched
    from lambdaforge.quantize import QuantizationError, engine

    md = open_model_dir(int8_dir)
    with np.load(md.file(md.manifest.eval_file), allow_pickle=False) as npz:
        feed = {s.name: npz[s.name] for s in md.manifest.inputs}
    default = predict_batched(open_session(md.model_path, error=QuantizationError), feed)
    exact = predict_batched(engine.exact_session(md.model_path), feed)
    return {"rows": len(default), "top1_agreement": float((default.argmax(-1) == exact.argmax(-1)).mean()),
            "max_logit_diff": float(np.abs(default - exact).max()),
            "saturation": engine.saturation_check(md.model_path).describe(), "host_isa": engine.host_isa()}


def host_limit(name: str, fp32_dir: Path, int8_dir: Path, work: Path, latency: dict[str, Any]) -> dict[str, Any]:
    """The host's limit for the model at batch 1 (text: 128 tokens): all its GEMM MACs at the host's best GEMM
    rate (INT8 or fp32, measured here on the model's own weight-GEMM shapes), and the fraction of that limit
    the shipped model reaches, from rounds that time both side by side (median of the per-round ratios, with
    a 95 % interval); the other variants' fractions use their steady latency. Also a limit that respects
    precision: the weight GEMMs at the INT8 rate and the others (attention's, fp32 in every variant) at the
    fp32 rate."""
    from lambdaforge.artifact import open_model_dir
    from lambdaforge.timing import median_interval

    md = open_model_dir(fp32_dir)
    feed = _inputs(name, md, 1)
    weight_macs, other_macs, gemms = gemm_work(md.model_path, feed)
    macs = weight_macs + other_macs
    if not gemms:
        return {"gemm_macs_b1": macs}
    shipped = open_model_dir(int8_dir).model_path
    rounds, graph_macs = gemm_rounds(gemms, work, shipped, feed)
    # per round: each precision's rate is its faster graph's; the limit is the model's MACs at the best one
    per_round = {p: np.max([graph_macs[k] / (rounds[k] / 1000) for k in graph_macs if k.startswith(p)], axis=0)
                 for p in ("fp32", "int8")}
    best_round = np.maximum(per_round["fp32"], per_round["int8"])
    fraction = macs / best_round * 1000 / rounds["shipped"]
    mixed_fraction = (weight_macs / per_round["int8"] + other_macs / per_round["fp32"]) * 1000 / rounds["shipped"]
    rates = {p: float(np.median(r)) for p, r in per_round.items()}
    best = max(rates.values())
    limit_ms = macs / best * 1000
    mixed_ms = (weight_macs / rates["int8"] + other_macs / rates["fp32"]) * 1000
    lo, hi = median_interval(fraction)
    # The shipped model's own split: its weight GEMMs' rate inside the model (when above the measured best
    # rate, the limit is generous), and the time in the operators around them, which no GEMM rate reaches.
    split = op_profile(shipped, feed, work)
    in_model = weight_macs / (split["weight_gemm_ms"] / 1000) if split["weight_gemm_ms"] > 0.01 else None
    return {"shipped_profile_b1": split,
            "shipped_weight_gemm_rate_gmacs": round(in_model / 1e9, 2) if in_model else None,
            "gemm_macs_b1": macs, "weight_gemm_macs_b1": weight_macs, "other_gemm_macs_b1": other_macs,
            "gemm_rate_gmacs": {k: round(v / 1e9, 2) for k, v in rates.items()},
            "gemm_graph_ms": {k: round(float(np.median(v)), 3) for k, v in rounds.items()},
            "best_rate": max(rates, key=lambda k: rates[k]), "limit_ms_b1": round(limit_ms, 3),
            "shipped_ms_in_rounds": round(float(np.median(rounds["shipped"])), 3),
            "shipped_fraction_of_limit_b1": {"median": round(float(np.median(fraction)), 3), "lo": round(lo, 3),
                                             "hi": round(hi, 3), "rounds": len(fraction)},
            # an optimistic estimate: every layout operator's time gone (see arithmetic_share)
            "shipped_fraction_of_limit_arithmetic_only_b1": {
                "side_by_side": round(float(np.median(fraction)) / split["arithmetic_share"], 3),
                "steady": round(limit_ms / latency["ort_int8"]["b1"]["p50"] / split["arithmetic_share"], 3)},
            "shipped_fraction_of_precision_limit_b1": round(float(np.median(mixed_fraction)), 3),
            "fraction_of_limit_b1": {b: round(limit_ms / per["b1"]["p50"], 3) for b, per in latency.items()},
            "int8_precision_limit_ms_b1": round(mixed_ms, 3),
            "int8_fraction_of_precision_limit_b1": round(mixed_ms / latency["ort_int8"]["b1"]["p50"], 3)}


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
        backends = [b for b in ("torch_fp32", "ort_fp32", "ort_int8_legacy", "ort_int8") if b in lat]
        width = 0.8 / len(backends)
        for i, backend in enumerate(backends):
            ax.bar(x + (i - (len(backends) - 1) / 2) * width, [lat[backend][k]["p50"] for k in keys], width,
                   label=backend)
        limit = results["recipes"][name].get("host_limit", {}).get("limit_ms_b1")
        if limit:
            ax.axhline(limit, color="black", linestyle="--", linewidth=1, label="host limit, batch 1")
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
    parser.add_argument("--no-small-encoder", dest="small_encoder", action="store_false",
                        help="skip the 3-layer text encoder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lf-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        results: dict[str, Any] = {"machine": machine(), "threads": 1, "recipes": {}}
        import onnxruntime

        results["onnxruntime"] = onnxruntime.__version__
        results["slow_fusions"] = slow_fusions(Path(tmp))
        results["attention_kernels"] = attention_kernels(Path(tmp))
        for name in args.recipes.split(","):
            fp32, int8 = train_and_quantize(name, workdir)
            results["recipes"][name] = bench_recipe(name, fp32, int8, workdir)
            if name == "text" and args.small_encoder:
                # A smaller encoder on request: the first 3 of MiniLM's 6 layers, fine-tuned on the same data.
                fp32_3, int8_3 = train_and_quantize("text", workdir / "layers3", {"encoder_layers": 3})
                results["recipes"]["text-3-layers"] = bench_recipe("text", fp32_3, int8_3, workdir / "layers3")
    write_json(args.out, results)
    plot(results, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
