"""The served model directory, opened and verified without pydantic (the cold start's share of it).

`lambdaforge.artifact` reads manifest.json through pydantic models. Importing pydantic and building
those models is a large part of a cold start, to read a manifest that `write_manifest` wrote. Here
the same manifest is checked field by field, and accepted only when it is *canonical*: the keys
are the model's own, and each value has exactly the JSON type pydantic reads it from (no coercion),
with the model's constraints and validators. pydantic would accept such a manifest and read the
same values. Anything else (an unknown or newer field, a value pydantic would coerce, a failed
check of any kind) goes to `lambdaforge.artifact.open_model_dir`, which accepts it or raises the
error it always raised. The files are verified as there: every referenced file is listed, and
every listed file lies inside the directory, is a regular file and has its sha256.

tests/unit/test_cold_path.py holds the field lists here equal to the pydantic models'.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lambdaforge.manifestrefs import referenced_files

if TYPE_CHECKING:
    from lambdaforge import artifact

MANIFEST_NAME = "manifest.json"  # == lambdaforge.artifact.manifest.MANIFEST_NAME
SUPPORTED_SCHEMA_VERSIONS = (1,)  # == lambdaforge.artifact.manifest.SUPPORTED_SCHEMA_VERSIONS
MAX_MANIFEST_BYTES = 1 << 20  # == lambdaforge.artifact.modeldir.MAX_MANIFEST_BYTES
_CHUNK = 1 << 20
_DTYPES = ("float32", "int64", "int32", "uint8")
_SYMBOLIC_DIMS = ("batch", "sequence")
_HEX = frozenset("0123456789abcdef")
# what pydantic writes for a datetime (and reads back unchanged); anything else goes to pydantic
_DATETIME = re.compile(r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?"
                       r"(Z|[+-]([01]\d|2[0-3]):[0-5]\d)?")


class NotCanonical(Exception):  # a signal to fall back, not an error anyone sees
    """The manifest or directory is not provably what pydantic accepts: `lambdaforge.artifact` decides."""


# --- value checks: each returns the value pydantic would produce, or raises NotCanonical
Check = Callable[[Any], Any]
_REQUIRED = object()


def _str(min_length: int = 0) -> Check:
    def check(value: Any) -> str:
        if type(value) is not str or len(value) < min_length:
            raise NotCanonical
        return value
    return check


def _int(ge: int | None = None, le: int | None = None) -> Check:
    def check(value: Any) -> int:
        if type(value) is not int or (ge is not None and value < ge) or (le is not None and value > le):
            raise NotCanonical
        return value
    return check


def _float(value: Any) -> float:
    if type(value) is not float:
        raise NotCanonical
    return value


def _bool(value: Any) -> bool:
    if type(value) is not bool:
        raise NotCanonical
    return value


def _literal(*allowed: Any) -> Check:
    def check(value: Any) -> Any:
        if type(value) is not type(allowed[0]) or value not in allowed:
            raise NotCanonical
        return value
    return check


def _optional(inner: Check) -> Check:
    return lambda value: None if value is None else inner(value)


def _tuple(item: Check, min_length: int = 0) -> Check:
    def check(value: Any) -> tuple[Any, ...]:
        if type(value) is not list or len(value) < min_length:
            raise NotCanonical
        return tuple(item(v) for v in value)
    return check


def _dict(item: Check) -> Check:
    def check(value: Any) -> dict[str, Any]:
        if type(value) is not dict:
            raise NotCanonical
        return {k: item(v) for k, v in value.items()}
    return check


def _any(value: Any) -> Any:
    return value


def _dim(value: Any) -> int | str:
    if type(value) is int or (type(value) is str and value in _SYMBOLIC_DIMS):
        return value
    raise NotCanonical


def _datetime(value: Any) -> datetime:
    if type(value) is not str or not _DATETIME.fullmatch(value):
        raise NotCanonical
    try:
        return datetime.fromisoformat(value)
    except ValueError:  # e.g. 30 February
        raise NotCanonical from None


def _fields(raw: Any, spec: dict[str, tuple[Check, Any]]) -> dict[str, Any]:
    """The object's fields in the model's order, defaults filled in (extra="forbid", as the models)."""
    if type(raw) is not dict or not raw.keys() <= spec.keys():
        raise NotCanonical
    out: dict[str, Any] = {}
    for name, (check, default) in spec.items():
        if name in raw:
            out[name] = check(raw[name])
        elif default is _REQUIRED:
            raise NotCanonical
        else:
            out[name] = default() if callable(default) else default
    return out


# --- the manifest, as the runtime reads it: the pydantic models' names, values and model_dump().
# Plain read-only classes: making a frozen dataclass costs about a millisecond of import each.
class _Record:
    """Read-only attributes, set once from keyword arguments (all of them: `_fields` fills the defaults)."""

    __slots__: tuple[str, ...] = ()

    def __init__(self, **values: Any) -> None:
        if values.keys() != set(self.__slots__):
            raise TypeError(f"{type(self).__name__} takes exactly {', '.join(self.__slots__)}")
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    def __hash__(self) -> int:
        return hash(tuple(repr(getattr(self, n)) for n in self.__slots__))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n in self.__slots__)})"

    def model_dump(self) -> dict[str, Any]:
        """The fields in the pydantic model's order, as its model_dump() gives them (GET /model shows some)."""
        return {name: getattr(self, name) for name in self.__slots__}


class TensorSpec(_Record):
    __slots__ = (  # noqa: RUF023 - the model's field order, which model_dump() keeps
        "name", "dtype", "shape")
    name: str
    dtype: str
    shape: tuple[int | str, ...]

    @property
    def item_shape(self) -> tuple[int, ...]:
        """The shape of one batch item, for tensor inputs whose non-batch dims are fixed."""
        dims = self.shape[1:]
        if any(not isinstance(d, int) for d in dims):
            raise ValueError(f"input {self.name} has dynamic non-batch dims {dims}")
        return tuple(int(d) for d in dims)


class InputLimits(_Record):
    __slots__ = (  # noqa: RUF023 - the model's field order, which model_dump() keeps
        "max_batch", "max_text_chars", "value_min", "value_max")
    max_batch: int
    max_text_chars: int | None
    value_min: float | None
    value_max: float | None


class Preprocessing(_Record):
    __slots__ = (  # noqa: RUF023 - the model's field order, which model_dump() keeps
        "kind", "tokenizer", "max_tokens")
    kind: str
    tokenizer: str | None
    max_tokens: int | None


class TrainingInfo(_Record):
    __slots__ = (  # noqa: RUF023 - the model's field order, which model_dump() keeps
        "recipe", "job_name", "dataset_version", "hyperparameters", "device", "world_size", "steps", "epochs",
        "seconds", "torch_version")
    recipe: str
    job_name: str
    dataset_version: str
    hyperparameters: dict[str, Any]
    device: str
    world_size: int
    steps: int
    epochs: int
    seconds: float
    torch_version: str | None


class QuantizationInfo(_Record):
    __slots__ = (  # noqa: RUF023 - the model's field order, which model_dump() keeps
        "mode", "chosen", "fallback", "report", "source_sha256", "scheme", "host_isa")
    mode: str
    chosen: str
    fallback: bool
    report: str
    source_sha256: str
    scheme: str | None
    host_isa: str | None


class Manifest(_Record):
    __slots__ = (  # noqa: RUF023 - the model's field order, which model_dump() keeps
        "schema_version", "recipe", "task", "model_file", "inputs", "outputs", "labels", "preprocessing", "limits",
        "primary_metric", "metrics", "weights_file", "eval_file", "calibration_file", "assets", "files", "training",
        "quantization", "created_at", "lambdaforge_version")
    schema_version: int
    recipe: str
    task: str
    model_file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    labels: tuple[str, ...]
    preprocessing: Preprocessing
    limits: InputLimits
    primary_metric: str
    metrics: dict[str, float]
    weights_file: str | None
    eval_file: str
    calibration_file: str | None
    assets: tuple[str, ...]
    files: dict[str, str]
    training: TrainingInfo
    quantization: QuantizationInfo | None
    created_at: datetime
    lambdaforge_version: str

    def referenced_files(self) -> list[str]:
        """Files the stages open; each must be listed (and so checksummed) in `files`."""
        return referenced_files(self)

    def input(self, name: str) -> TensorSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise KeyError(name)


# The pydantic models' fields, in their order: (check, default), _REQUIRED where there is none.
_TENSOR: dict[str, tuple[Check, Any]] = {
    "name": (_str(min_length=1), _REQUIRED), "dtype": (_literal(*_DTYPES), _REQUIRED),
    "shape": (_tuple(_dim), _REQUIRED)}
_LIMITS: dict[str, tuple[Check, Any]] = {
    "max_batch": (_int(ge=1, le=4096), 64), "max_text_chars": (_optional(_int(ge=1)), None),
    "value_min": (_optional(_float), None), "value_max": (_optional(_float), None)}
_PREPROCESSING: dict[str, tuple[Check, Any]] = {
    "kind": (_literal("tensor", "text"), _REQUIRED), "tokenizer": (_optional(_str()), None),
    "max_tokens": (_optional(_int(ge=2)), None)}
_TRAINING: dict[str, tuple[Check, Any]] = {
    "recipe": (_str(), _REQUIRED), "job_name": (_str(), _REQUIRED), "dataset_version": (_str(), _REQUIRED),
    "hyperparameters": (_dict(_any), dict), "device": (_str(), "cpu"), "world_size": (_int(), 1),
    "steps": (_int(), 0), "epochs": (_int(), 0), "seconds": (_float, 0.0), "torch_version": (_optional(_str()), None)}
_QUANTIZATION: dict[str, tuple[Check, Any]] = {
    "mode": (_str(), _REQUIRED), "chosen": (_str(), _REQUIRED), "fallback": (_bool, False),
    "report": (_str(), "quantization_report.json"), "source_sha256": (_str(), _REQUIRED),
    "scheme": (_optional(_str()), None), "host_isa": (_optional(_str()), None)}


def _tensor(raw: Any) -> TensorSpec:
    return TensorSpec(**_fields(raw, _TENSOR))


def _preprocessing(raw: Any) -> Preprocessing:
    pre = Preprocessing(**_fields(raw, _PREPROCESSING))
    if pre.kind == "text" and (not pre.tokenizer or not pre.max_tokens):
        raise NotCanonical  # pydantic's validator names the problem
    return pre


def _files(raw: Any) -> dict[str, str]:
    files: dict[str, str] = _dict(_str())(raw)
    for rel, digest in files.items():
        if rel.startswith("/") or ".." in rel.split("/") or "\\" in rel or len(digest) != 64 or \
                not set(digest) <= _HEX:
            raise NotCanonical  # pydantic's validator names the problem
    return files


_MANIFEST: dict[str, tuple[Check, Any]] = {
    "schema_version": (_literal(1), 1), "recipe": (_str(), _REQUIRED), "task": (_literal("classification"),
                                                                               "classification"),
    "model_file": (_str(), "model.onnx"), "inputs": (_tuple(_tensor, min_length=1), _REQUIRED),
    "outputs": (_tuple(_tensor, min_length=1), _REQUIRED), "labels": (_tuple(_str(), min_length=2), _REQUIRED),
    "preprocessing": (_preprocessing, _REQUIRED), "limits": (lambda raw: InputLimits(**_fields(raw, _LIMITS)),
                                                             lambda: InputLimits(**_fields({}, _LIMITS))),
    "primary_metric": (_str(), "accuracy"), "metrics": (_dict(_float), dict),
    "weights_file": (_optional(_str()), None), "eval_file": (_str(), "eval.npz"),
    "calibration_file": (_optional(_str()), None), "assets": (_tuple(_str()), ()), "files": (_files, dict),
    "training": (lambda raw: TrainingInfo(**_fields(raw, _TRAINING)), _REQUIRED),
    "quantization": (_optional(lambda raw: QuantizationInfo(**_fields(raw, _QUANTIZATION))), None),
    "created_at": (_datetime, _REQUIRED), "lambdaforge_version": (_str(), _REQUIRED),
}
# the pydantic models' field names in order, for the test that keeps the two readers in step
FIELDS = {"TensorSpec": tuple(_TENSOR), "InputLimits": tuple(_LIMITS), "Preprocessing": tuple(_PREPROCESSING),
          "TrainingInfo": tuple(_TRAINING), "QuantizationInfo": tuple(_QUANTIZATION), "Manifest": tuple(_MANIFEST)}


def parse_manifest(raw: Any) -> Manifest:
    """A canonical manifest (a parsed manifest.json) as the runtime reads it; NotCanonical otherwise.

    created_at and lambdaforge_version have defaults in the pydantic model (now, this version) that
    a written manifest never relies on: here they are required, and a manifest without them goes to
    pydantic.
    """
    if type(raw) is not dict or raw.get("schema_version") not in SUPPORTED_SCHEMA_VERSIONS:
        raise NotCanonical
    return Manifest(**_fields(raw, _MANIFEST))


class ModelDir(_Record):
    """A verified model directory: its path and its manifest (lambdaforge.artifact.ModelDir's interface)."""

    __slots__ = ("manifest", "path")
    path: Path
    manifest: Manifest

    def file(self, rel: str) -> Path:
        if rel not in self.manifest.files:
            from lambdaforge.artifact.errors import MissingFileError

            raise MissingFileError(f"{self.path / MANIFEST_NAME}: {rel} is not listed in the manifest")
        return self.path / rel

    @property
    def model_path(self) -> Path:
        return self.file(self.manifest.model_file)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _open(path: Path) -> ModelDir:
    manifest_path = path / MANIFEST_NAME
    if not path.is_dir() or not manifest_path.is_file() or manifest_path.stat().st_size > MAX_MANIFEST_BYTES:
        raise NotCanonical
    manifest = parse_manifest(json.loads(manifest_path.read_text(encoding="utf-8")))
    if any(rel not in manifest.files for rel in manifest.referenced_files()):
        raise NotCanonical
    root = path.resolve()
    for rel, expected in sorted(manifest.files.items()):
        file = path / rel
        if not file.resolve().is_relative_to(root) or file.is_symlink() or not file.is_file() or \
                _sha256(file) != expected:
            raise NotCanonical
    return ModelDir(path=path, manifest=manifest)


def open_model_dir(model_dir: Path | str) -> ModelDir | artifact.ModelDir:
    """Read and verify a model directory: here when the manifest is canonical and every file checks out,
    else through `lambdaforge.artifact.open_model_dir` (its answer, or its error, exactly)."""
    path = Path(model_dir)
    try:
        return _open(path)
    except Exception:  # noqa: S110 - whatever it is, the full reader decides and says why
        pass
    from lambdaforge.artifact import open_model_dir as open_verified

    return open_verified(path)
