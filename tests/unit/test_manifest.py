"""The model-directory contract: checksums, schema versions, missing files, bad JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lambdaforge.artifact import (
    ChecksumMismatchError,
    Manifest,
    ManifestError,
    MissingFileError,
    Preprocessing,
    TensorSpec,
    TrainingInfo,
    UnknownManifestVersionError,
    open_model_dir,
    write_manifest,
)


def make_dir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "model.onnx").write_bytes(b"onnx-bytes" * 100)
    (root / "eval.npz").write_bytes(b"eval")
    manifest = Manifest(
        recipe="digits",
        inputs=(TensorSpec(name="pixels", dtype="float32", shape=("batch", 1, 8, 8)),),
        outputs=(TensorSpec(name="logits", dtype="float32", shape=("batch", 10)),),
        labels=tuple(str(i) for i in range(10)),
        preprocessing=Preprocessing(kind="tensor"),
        training=TrainingInfo(recipe="digits", job_name="job-1", dataset_version="abc"),
    )
    write_manifest(root, manifest)
    return root


def test_roundtrip_lists_every_file_with_its_sha256(tmp_path: Path) -> None:
    md = open_model_dir(make_dir(tmp_path / "m"))
    assert set(md.manifest.files) == {"model.onnx", "eval.npz"}
    assert all(len(v) == 64 for v in md.manifest.files.values())
    assert md.model_path == tmp_path / "m" / "model.onnx"


def test_one_changed_byte_is_rejected_by_checksum(tmp_path: Path) -> None:
    root = make_dir(tmp_path / "m")
    data = bytearray((root / "model.onnx").read_bytes())
    data[17] ^= 0x01
    (root / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError, match=r"model\.onnx: sha256 mismatch"):
        open_model_dir(root)


def test_unknown_schema_version_is_rejected(tmp_path: Path) -> None:
    root = make_dir(tmp_path / "m")
    raw = json.loads((root / "manifest.json").read_text())
    raw["schema_version"] = 99
    (root / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(UnknownManifestVersionError, match="schema_version 99 is not supported"):
        open_model_dir(root)


def test_missing_schema_version_is_rejected(tmp_path: Path) -> None:
    root = make_dir(tmp_path / "m")
    raw = json.loads((root / "manifest.json").read_text())
    del raw["schema_version"]
    (root / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match="schema_version is missing"):
        open_model_dir(root)


def test_missing_file_is_rejected(tmp_path: Path) -> None:
    root = make_dir(tmp_path / "m")
    (root / "eval.npz").unlink()
    with pytest.raises(MissingFileError, match=r"eval\.npz: listed in the manifest but missing"):
        open_model_dir(root)


def test_invalid_json_names_the_file(tmp_path: Path) -> None:
    root = make_dir(tmp_path / "m")
    (root / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match=r"manifest\.json: not valid JSON"):
        open_model_dir(root)


def test_schema_errors_name_the_field(tmp_path: Path) -> None:
    root = make_dir(tmp_path / "m")
    raw = json.loads((root / "manifest.json").read_text())
    raw["labels"] = ["only-one"]
    (root / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match="labels"):
        open_model_dir(root)


def test_paths_escaping_the_directory_are_rejected(tmp_path: Path) -> None:
    root = make_dir(tmp_path / "m")
    raw = json.loads((root / "manifest.json").read_text())
    raw["files"]["../outside"] = "0" * 64
    (root / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match="must be relative"):
        open_model_dir(root)


def test_a_referenced_file_without_checksum_is_rejected(tmp_path: Path) -> None:
    root = make_dir(tmp_path / "m")
    raw = json.loads((root / "manifest.json").read_text())
    del raw["files"]["eval.npz"]
    (root / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match=r"eval\.npz is used but has no checksum"):
        open_model_dir(root)


def test_symlinks_are_refused_when_writing(tmp_path: Path) -> None:
    root = make_dir(tmp_path / "m")
    (root / "link").symlink_to(root / "model.onnx")
    md = open_model_dir(root)
    with pytest.raises(ManifestError, match="symbolic links"):
        write_manifest(root, md.manifest)
