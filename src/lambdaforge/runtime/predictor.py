"""The predictor: one onnxruntime session made at init, inputs validated against the manifest.

It never imports torch (the inference image has none). Pre- and post-processing come from
the manifest: tensors as they are, or text through the model directory's tokenizer.json;
softmax and labels on the way out.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from lambdaforge import envvars
from lambdaforge.onnxsession import open_session, optimized_elsewhere, runtime_version
from lambdaforge.runtime.errors import InvalidInputError, RuntimeModelError

if TYPE_CHECKING:
    from lambdaforge import artifact
    from lambdaforge.runtime.modelfiles import ModelDir

LAMBDA_MB_PER_VCPU = 1769
FLOAT32_MAX = float(np.finfo(np.float32).max)
_NP_DTYPES = {"float32": np.float32, "int64": np.int64, "int32": np.int32, "uint8": np.uint8}


def default_threads() -> int:
    """Threads matched to the function's vCPUs: Lambda gives one vCPU per 1,769 MB, at most six."""
    memory = os.environ.get(envvars.LAMBDA_MEMORY_MB)
    if memory and memory.isdigit():
        return max(1, min(6, math.ceil(int(memory) / LAMBDA_MB_PER_VCPU)))
    return max(1, min(os.cpu_count() or 1, 6))


def accepted_shapes(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The forms a tensor instance may take: its shape, the shape without 1s, the flat list (distinct,
    in that order). The predictor and the OpenAPI document both read them here, so they agree."""
    forms: list[tuple[int, ...]] = []
    for form in (shape, tuple(d for d in shape if d != 1), (int(np.prod(shape)),)):
        if form not in forms:
            forms.append(form)
    return forms


def _has_non_number(item: Any, depth: int = 0) -> bool:
    """JSON true/false and strings would pass numpy's float conversion; they are not pixel values."""
    if isinstance(item, bool | str) or item is None:
        return True
    if isinstance(item, list):
        return depth > 8 or any(_has_non_number(x, depth + 1) for x in item)
    return False


@dataclass(frozen=True)
class Prediction:
    label: str
    index: int
    score: float
    top_k: list[tuple[str, float]]


class Predictor:
    def __init__(self, model_dir: ModelDir | artifact.ModelDir, *, threads: int | None = None,
                 warm_up: bool = True) -> None:
        self.model_dir = model_dir
        self.manifest = manifest = model_dir.manifest
        self.threads = envvars.setting(threads, envvars.THREADS, default_threads(), int)
        self.session = open_session(model_dir.model_path, error=RuntimeModelError, threads=self.threads)
        wrote = optimized_elsewhere(self.session)
        if wrote is not None:  # it still runs (optimized again online), but was gated as the other version ran it
            logging.getLogger(__name__).warning(
                "%s was optimized by %s and runs on %s: package the version quantization used",
                model_dir.model_path, wrote, runtime_version())
        self.input_names = [s.name for s in manifest.inputs]
        self.tokenizer: Any = None
        if manifest.preprocessing.kind == "text":
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(model_dir.file(manifest.preprocessing.tokenizer or "")))
            tok.enable_truncation(max_length=manifest.preprocessing.max_tokens or 128)
            tok.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106 - pad to the batch's longest row
            self.tokenizer = tok
        self.labels = list(manifest.labels)
        self.version: str = os.environ.get(envvars.MODEL_VERSION) or manifest.training.job_name
        self._description: dict[str, Any] | None = None
        if warm_up:
            self._warm_up()

    @property
    def kind(self) -> str:
        return self.manifest.preprocessing.kind

    def _warm_up(self) -> None:
        t0 = time.perf_counter()
        sample: list[Any] = ["warm up"] if self.kind == "text" else \
            [np.zeros(self.manifest.inputs[0].item_shape).tolist()]
        self.predict(sample)
        self.warm_up_ms = (time.perf_counter() - t0) * 1000

    # --- validation
    def validate(self, instances: Any) -> dict[str, np.ndarray]:
        limits = self.manifest.limits
        if not isinstance(instances, list):
            raise InvalidInputError("instances", "must be a list")
        if not instances:
            raise InvalidInputError("instances", "must not be empty")
        if len(instances) > limits.max_batch:
            raise InvalidInputError("instances", f"batch of {len(instances)} exceeds the limit of {limits.max_batch}")
        if self.kind == "text":
            return self._text_inputs(instances)
        return self._tensor_inputs(instances)

    def _text_inputs(self, instances: list[Any]) -> dict[str, np.ndarray]:
        limit = self.manifest.limits.max_text_chars
        for i, text in enumerate(instances):
            if not isinstance(text, str):
                raise InvalidInputError(f"instances[{i}]", f"must be a string for this text model, "
                                                           f"got {type(text).__name__}")
            if not text.strip():
                raise InvalidInputError(f"instances[{i}]", "must not be empty or only whitespace")
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidInputError(f"instances[{i}]", "holds a lone surrogate; it is not Unicode text") from None
            if limit and len(text) > limit:
                raise InvalidInputError(f"instances[{i}]", f"text of {len(text)} characters exceeds the limit "
                                                           f"of {limit}")
        encodings = self.tokenizer.encode_batch(instances)
        return {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        }

    def _tensor_inputs(self, instances: list[Any]) -> dict[str, np.ndarray]:
        spec = self.manifest.inputs[0]
        shape = spec.item_shape
        size = int(np.prod(shape))
        limits = self.manifest.limits
        rows = []
        for i, item in enumerate(instances):
            if isinstance(item, str | bool) or item is None:
                raise InvalidInputError(f"instances[{i}]", f"must be numbers (shape {list(shape)} or {size} "
                                                           f"values), got {type(item).__name__}")
            if _has_non_number(item):
                raise InvalidInputError(f"instances[{i}]", "contains a value that is not a number "
                                                           "(true, false, null or a string)")
            try:
                arr = np.asarray(item, dtype=np.float64)
            except (TypeError, ValueError):
                raise InvalidInputError(f"instances[{i}]", f"must be numbers in shape {list(shape)} "
                                                           f"(or a flat list of {size})") from None
            if arr.dtype == object:
                raise InvalidInputError(f"instances[{i}]", "nested lists have uneven lengths")
            if arr.shape != shape:
                squeezed = tuple(d for d in shape if d != 1)
                if arr.shape in accepted_shapes(shape):
                    arr = arr.reshape(shape)
                else:
                    raise InvalidInputError(f"instances[{i}]", f"has shape {list(arr.shape)}, expected {list(shape)} "
                                                               f"(or {list(squeezed)}, or a flat list of {size})")
            if not np.isfinite(arr).all():
                raise InvalidInputError(f"instances[{i}]", "contains NaN or infinity")
            if spec.dtype == "float32" and np.abs(arr).max() > FLOAT32_MAX:
                raise InvalidInputError(f"instances[{i}]", "holds a number too large for float32")
            if limits.value_min is not None and arr.min() < limits.value_min:
                raise InvalidInputError(f"instances[{i}]",
                                        f"value {arr.min():g} is below the minimum {limits.value_min:g}")
            if limits.value_max is not None and arr.max() > limits.value_max:
                raise InvalidInputError(f"instances[{i}]",
                                        f"value {arr.max():g} is above the maximum {limits.value_max:g}")
            rows.append(arr)
        return {spec.name: np.stack(rows).astype(_NP_DTYPES[spec.dtype])}

    # --- inference
    def predict(self, instances: Any, top_k: int = 3) -> list[Prediction]:
        inputs = self.validate(instances)
        logits = self.session.run(None, {n: inputs[n] for n in self.input_names})[0].astype(np.float64)
        broken = np.flatnonzero(~np.isfinite(logits).all(axis=-1))
        if broken.size:  # inputs near float32's limit overflow inside the model: no score means anything (NaN)
            raise InvalidInputError(f"instances[{int(broken[0])}]", "the model's output is not finite for this "
                                    "input (values this large overflow float32 inside the model)")
        logits -= logits.max(axis=-1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=-1, keepdims=True)
        k = max(1, min(top_k, len(self.labels)))
        out = []
        for row in probs:
            order = np.argsort(-row)[:k]
            best = int(order[0])
            out.append(Prediction(label=self.labels[best], index=best, score=float(row[best]),
                                  top_k=[(self.labels[int(j)], float(row[j])) for j in order]))
        return out

    def sample_request(self) -> dict[str, Any]:
        """A valid request body made from the model's own first evaluation row (docs, the CLI's curl, smoke)."""
        with np.load(self.model_dir.file(self.manifest.eval_file), allow_pickle=False) as npz:
            first = np.asarray(npz[self.input_names[0]][0]).reshape(-1)
        if self.kind == "text":
            text = self.tokenizer.decode([int(i) for i in first], skip_special_tokens=True).strip()
            limit = self.manifest.limits.max_text_chars
            return {"instances": [(text[:limit] if limit else text) or "hello"]}
        values = [int(v) if float(v).is_integer() else round(float(v), 4) for v in first]
        return {"instances": [values]}

    def identity(self) -> dict[str, Any]:
        """The model an answer names: its recipe and version (what `describe()` says, without its example)."""
        return {"recipe": self.manifest.recipe, "version": self.version}

    def describe(self) -> dict[str, Any]:
        """What GET /model shows; the same for the life of the predictor, so it is built once."""
        if self._description is None:
            self._description = self._describe()
        return self._description

    def _describe(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "recipe": m.recipe,
            "version": self.version,
            "task": m.task,
            "labels": list(m.labels),
            "inputs": [s.model_dump() for s in m.inputs],
            "limits": m.limits.model_dump(),
            "metrics": m.metrics,
            "quantization": m.quantization.model_dump() if m.quantization else None,
            "training": {"job_name": m.training.job_name, "dataset_version": m.training.dataset_version},
            "threads": self.threads,
            "example": self.sample_request(),
        }
