"""The data bucket's convention: which uploads start a retraining run.

- `data/<recipe>/<file>.csv`: a one-file dataset; the upload itself starts a run.
- `data/<recipe>/<dataset>/...` then `data/<recipe>/<dataset>/_READY`: a multi-file dataset; only the
  marker starts a run (files uploaded before it start nothing). The marker may hold JSON:
  `{"hyperparameters": {"epochs": 30}}`.
Anything else under the prefix is rejected with a reason; objects outside it are ignored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from lambdaforge.pipeline.errors import UploadRejectedError

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel

MARKER = "_READY"
MAX_MARKER_BYTES = 64 * 1024


@dataclass(frozen=True)
class Upload:
    bucket: str
    key: str
    size: int
    etag: str
    version_id: str | None = None
    uploaded_at: str = ""  # the event's time (ISO 8601): which of two datasets is newer

    @property
    def identity(self) -> str:
        """Same object version, same identity: what makes duplicate events one run."""
        return f"{self.bucket}/{self.key}#{self.version_id or self.etag}"

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.identity.encode()).hexdigest()

    @classmethod
    def from_event(cls, event: S3EventNotificationEventBridgeModel) -> Upload:
        """The object an S3 object-created event (through EventBridge) names."""
        obj = event.detail.object
        return cls(bucket=event.detail.bucket.name, key=obj.key, size=int(obj.size or 0), etag=obj.etag or "",
                   version_id=obj.version_id, uploaded_at=event.time.isoformat())

    def to_json(self) -> dict[str, Any]:
        """The object with its identity beside it: the trigger's idempotency key (`identity`)."""
        return {"identity": self.identity, "object": dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Upload:
        return cls(**data["object"])


@dataclass(frozen=True)
class DatasetSpec:
    recipe: str
    s3_uri: str  # a file or a prefix; the training channel
    kind: Literal["file", "folder"]
    version: str
    upload: Upload
    hyperparameters: dict[str, Any] = field(default_factory=dict)

    @property
    def run_name(self) -> str:
        """The execution name: deterministic, so a duplicate event cannot start a second run."""
        return f"{self.recipe}-{self.upload.digest[:16]}"

    def to_json(self) -> dict[str, Any]:
        return {"recipe": self.recipe, "s3_uri": self.s3_uri, "kind": self.kind, "version": self.version,
                "bucket": self.upload.bucket, "key": self.upload.key, "size": self.upload.size,
                "etag": self.upload.etag, "version_id": self.upload.version_id,
                "uploaded_at": self.upload.uploaded_at, "hyperparameters": self.hyperparameters}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DatasetSpec:
        upload = Upload(bucket=data["bucket"], key=data["key"], size=int(data["size"]), etag=data["etag"],
                        version_id=data.get("version_id"), uploaded_at=str(data.get("uploaded_at") or ""))
        return cls(recipe=data["recipe"], s3_uri=data["s3_uri"], kind=data["kind"], version=data["version"],
                   upload=upload, hyperparameters=dict(data.get("hyperparameters") or {}))


def classify(upload: Upload, *, prefix: str, known_recipes: dict[str, tuple[str, ...]],
             max_bytes: int) -> DatasetSpec | None:
    """The dataset an upload completes, None when it starts nothing, or UploadRejectedError."""
    if not upload.key.startswith(prefix):
        return None
    rest = upload.key[len(prefix):]
    parts = rest.split("/")
    if len(parts) < 2 or not parts[0]:
        raise UploadRejectedError(f"s3://{upload.bucket}/{upload.key}: put data under {prefix}<recipe>/ "
                                  f"(recipes: {', '.join(sorted(known_recipes))})")
    recipe = parts[0]
    if recipe not in known_recipes:
        raise UploadRejectedError(f"s3://{upload.bucket}/{upload.key}: unknown recipe {recipe!r} "
                                  f"(recipes: {', '.join(sorted(known_recipes))})")
    if any(p in ("", ".", "..") for p in parts[1:]):
        raise UploadRejectedError(f"s3://{upload.bucket}/{upload.key}: empty or relative path segment")
    name = parts[-1]
    if upload.size > max_bytes:
        raise UploadRejectedError(f"s3://{upload.bucket}/{upload.key}: {upload.size} bytes is over the limit of "
                                  f"{max_bytes}")
    version = f"{upload.key}@{(upload.version_id or upload.etag)[:16]}"
    if len(parts) == 2:
        suffixes = known_recipes[recipe]
        if name == MARKER or not any(name.lower().endswith(s) for s in suffixes):
            raise UploadRejectedError(f"s3://{upload.bucket}/{upload.key}: recipe {recipe!r} accepts "
                                      f"{', '.join(suffixes)} files (or a folder with a {MARKER} marker)")
        if upload.size == 0:
            raise UploadRejectedError(f"s3://{upload.bucket}/{upload.key}: the file is empty")
        return DatasetSpec(recipe=recipe, s3_uri=f"s3://{upload.bucket}/{upload.key}", kind="file",
                           version=version, upload=upload)
    if name != MARKER:
        return None  # part of a folder dataset; its _READY marker starts the run
    folder = upload.key[: -len(MARKER)]
    return DatasetSpec(recipe=recipe, s3_uri=f"s3://{upload.bucket}/{folder}", kind="folder", version=version,
                       upload=upload)


def parse_marker(raw: bytes, where: str) -> dict[str, Any]:
    """The optional JSON body of a _READY marker: hyperparameters for this run."""
    if not raw.strip():
        return {}
    if len(raw) > MAX_MARKER_BYTES:
        raise UploadRejectedError(f"{where}: the {MARKER} marker is larger than {MAX_MARKER_BYTES} bytes")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UploadRejectedError(f"{where}: the {MARKER} marker is not JSON ({exc})") from exc
    except RecursionError as exc:  # the parser recurses once per level: `[[[[...` exhausts the stack
        raise UploadRejectedError(f"{where}: the {MARKER} marker is nested too deeply to read") from exc
    except ValueError as exc:  # an integer of over 4,300 digits (int's string conversion limit)
        reason = str(exc).split(";")[0]  # not Python's advice on raising the limit
        raise UploadRejectedError(f"{where}: the {MARKER} marker holds a number too long to read ({reason})") from exc
    if not isinstance(body, dict) or set(body) - {"hyperparameters"}:
        raise UploadRejectedError(f"{where}: the {MARKER} marker may only hold {{\"hyperparameters\": {{...}}}}")
    hps = body.get("hyperparameters", {})
    if not isinstance(hps, dict) or not all(isinstance(v, str | int | float | bool) for v in hps.values()):
        raise UploadRejectedError(f"{where}: hyperparameters must be an object of strings, numbers or booleans")
    return hps


def job_name(recipe: str, digest: str) -> str:
    """A SageMaker training job name (unique per upload; at most 63 characters)."""
    clean = re.sub(r"[^A-Za-z0-9-]", "-", recipe).strip("-")[:30] or "model"
    return f"lf-{clean}-{digest[:16]}"
