"""Reading, verifying and writing a model directory.

A model directory is trusted only after `open_model_dir` has checked the manifest's schema
version, that every listed file exists, and that every sha256 matches.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from lambdaforge.artifact.errors import (
    ChecksumMismatchError,
    ManifestError,
    MissingFileError,
    UnknownManifestVersionError,
)
from lambdaforge.artifact.manifest import MANIFEST_NAME, SUPPORTED_SCHEMA_VERSIONS, Manifest

MAX_MANIFEST_BYTES = 1 << 20
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelDir:
    """A verified model directory: its path and its manifest."""

    path: Path
    manifest: Manifest

    def file(self, rel: str) -> Path:
        if rel not in self.manifest.files:
            raise MissingFileError(f"{self.path / MANIFEST_NAME}: {rel} is not listed in the manifest")
        return self.path / rel

    @property
    def model_path(self) -> Path:
        return self.file(self.manifest.model_file)


def _format_validation(err: ValidationError) -> str:
    parts = []
    for item in err.errors()[:5]:
        loc = ".".join(str(p) for p in item["loc"]) or "(root)"
        parts.append(f"{loc}: {item['msg']}")
    return "; ".join(parts)


def read_manifest(model_dir: Path) -> Manifest:
    """Parse manifest.json, refusing unknown schema versions before anything else."""
    path = Path(model_dir) / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"{path}: no manifest.json in the model directory")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{path}: manifest is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        raw: Any = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise ManifestError(f"{path}: the manifest must be a JSON object")
    version = raw.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ManifestError(f"{path}: schema_version is missing or not an integer")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        supported = ", ".join(str(v) for v in SUPPORTED_SCHEMA_VERSIONS)
        raise UnknownManifestVersionError(
            f"{path}: manifest schema_version {version} is not supported (this lambdaforge reads {supported})",
            hint="upgrade lambdaforge or re-export the model",
        )
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        raise ManifestError(f"{path}: {_format_validation(exc)}") from exc


def verify(model_dir: Path, manifest: Manifest) -> None:
    """Every referenced file is listed, every listed file exists and matches its sha256."""
    model_dir = Path(model_dir)
    root = model_dir.resolve()
    for rel in manifest.referenced_files():
        if rel not in manifest.files:
            raise ManifestError(f"{model_dir / MANIFEST_NAME}: {rel} is used but has no checksum in 'files'")
    for rel, expected in sorted(manifest.files.items()):
        path = model_dir / rel
        if not path.resolve().is_relative_to(root):
            raise ManifestError(f"{model_dir / MANIFEST_NAME}: {rel} points outside the model directory")
        if path.is_symlink() or not path.is_file():
            raise MissingFileError(f"{path}: listed in the manifest but missing (or not a regular file)")
        actual = sha256_file(path)
        if actual != expected:
            raise ChecksumMismatchError(
                f"{path}: sha256 mismatch (manifest {expected[:16]}…, file {actual[:16]}…); "
                "the file was changed or corrupted after the manifest was written"
            )


def open_model_dir(model_dir: Path | str, *, verify_checksums: bool = True) -> ModelDir:
    """Read and verify a model directory; the only way other stages should open one."""
    path = Path(model_dir)
    if not path.is_dir():
        raise ManifestError(f"{path}: not a directory")
    manifest = read_manifest(path)
    if verify_checksums:
        verify(path, manifest)
    return ModelDir(path=path, manifest=manifest)


def write_manifest(model_dir: Path | str, manifest: Manifest) -> Manifest:
    """Checksum every file in the directory into the manifest and write it atomically."""
    root = Path(model_dir)
    files: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            raise ManifestError(f"{path}: symbolic links are not allowed in a model directory")
        if path.is_file() and path.name != MANIFEST_NAME:
            files[path.relative_to(root).as_posix()] = sha256_file(path)
    final = manifest.model_copy(update={"files": files})
    # validate again: model_copy skips validation, and missing referenced files must fail here, not later
    final = Manifest.model_validate(final.model_dump())
    for rel in final.referenced_files():
        if rel not in files:
            raise MissingFileError(f"{root / rel}: the manifest refers to it but it was not written")
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".manifest.", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(final.model_dump_json(indent=2))
        fh.write("\n")
    os.replace(tmp, root / MANIFEST_NAME)
    return final
