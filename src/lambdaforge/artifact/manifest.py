"""manifest.json: the versioned description of a model directory.

The model directory is the interface between training, quantization and serving, so the
manifest carries everything a stage needs (inputs, limits, labels, preprocessing assets,
metrics) and a sha256 for every file, and each stage verifies it on the way in.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lambdaforge import __version__
from lambdaforge.manifestrefs import referenced_files

SCHEMA_VERSION: Literal[1] = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)
MANIFEST_NAME = "manifest.json"

DType = Literal["float32", "int64", "int32", "uint8"]
Dim = int | Literal["batch", "sequence"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TensorSpec(_Frozen):
    """One model input or output; symbolic dims are the dynamic axes of the ONNX graph."""

    name: str = Field(min_length=1)
    dtype: DType
    shape: tuple[Dim, ...]

    @property
    def item_shape(self) -> tuple[int, ...]:
        """The shape of one batch item, for tensor inputs whose non-batch dims are fixed."""
        dims = self.shape[1:]
        if any(not isinstance(d, int) for d in dims):
            raise ValueError(f"input {self.name} has dynamic non-batch dims {dims}")
        return tuple(int(d) for d in dims)


class InputLimits(_Frozen):
    """What one request may contain; the runtime rejects anything beyond with a 4xx."""

    max_batch: int = Field(default=64, ge=1, le=4096)
    max_text_chars: int | None = Field(default=None, ge=1)
    value_min: float | None = None
    value_max: float | None = None


class Preprocessing(_Frozen):
    """How a request becomes model inputs, without torch: a tensor as is, or text through a tokenizer."""

    kind: Literal["tensor", "text"]
    tokenizer: str | None = None  # a file in the model directory (tokenizer.json of the `tokenizers` library)
    max_tokens: int | None = Field(default=None, ge=2)

    @model_validator(mode="after")
    def _text_needs_tokenizer(self) -> Preprocessing:
        if self.kind == "text" and (not self.tokenizer or not self.max_tokens):
            raise ValueError("text preprocessing needs a tokenizer file and max_tokens")
        return self


class TrainingInfo(_Frozen):
    recipe: str
    job_name: str
    dataset_version: str
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    device: str = "cpu"
    world_size: int = 1
    steps: int = 0
    epochs: int = 0
    seconds: float = 0.0
    torch_version: str | None = None


class QuantizationInfo(_Frozen):
    mode: str  # what was asked: auto, dynamic, static
    chosen: str  # the candidate that ships, or "fp32" (none passed, or every INT8 model was measurably slower)
    fallback: bool = False
    report: str = "quantization_report.json"
    source_sha256: str  # the fp32 model.onnx it was made from
    # how the INT8 weights were made so every CPU computes the same (e.g. "u8s8-7bit", "u8u8", "fp32"), and the
    # ISA class of the host that chose it ("x86-avx2", "x86-vnni", "x86-amx", "arm64-sdot"); None for older models
    scheme: str | None = None
    host_isa: str | None = None


class Manifest(_Frozen):
    schema_version: Literal[1] = SCHEMA_VERSION
    recipe: str
    task: Literal["classification"] = "classification"
    model_file: str = "model.onnx"
    inputs: tuple[TensorSpec, ...] = Field(min_length=1)
    outputs: tuple[TensorSpec, ...] = Field(min_length=1)
    labels: tuple[str, ...] = Field(min_length=2)
    preprocessing: Preprocessing
    limits: InputLimits = InputLimits()
    primary_metric: str = "accuracy"
    metrics: dict[str, float] = Field(default_factory=dict)
    weights_file: str | None = None
    eval_file: str = "eval.npz"
    calibration_file: str | None = None
    assets: tuple[str, ...] = ()
    files: dict[str, str] = Field(default_factory=dict)  # relative path -> sha256 hex
    training: TrainingInfo
    quantization: QuantizationInfo | None = None
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    lambdaforge_version: str = __version__

    @field_validator("files")
    @classmethod
    def _relative_paths(cls, files: dict[str, str]) -> dict[str, str]:
        for rel, digest in files.items():
            if rel.startswith("/") or ".." in rel.split("/") or "\\" in rel:
                raise ValueError(f"file path {rel!r} must be relative and stay inside the model directory")
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError(f"sha256 of {rel!r} is not 64 lowercase hex characters")
        return files

    def referenced_files(self) -> list[str]:
        """Files the stages open; each must be listed (and so checksummed) in `files`."""
        return referenced_files(self)

    def input(self, name: str) -> TensorSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise KeyError(name)
