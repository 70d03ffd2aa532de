"""The model directory contract: manifest.json (versioned, checksummed), and safe archives."""

from lambdaforge.artifact.builder import ModelDirBuilder, carried_files
from lambdaforge.artifact.errors import (
    ArtifactError,
    ChecksumMismatchError,
    ManifestError,
    MissingFileError,
    UnknownManifestVersionError,
    UnsafeArchiveError,
)
from lambdaforge.artifact.manifest import (
    MANIFEST_NAME,
    SCHEMA_VERSION,
    InputLimits,
    Manifest,
    Preprocessing,
    QuantizationInfo,
    TensorSpec,
    TrainingInfo,
)
from lambdaforge.artifact.modeldir import ModelDir, open_model_dir, read_manifest, sha256_file, write_manifest
from lambdaforge.artifact.tarball import check_archive, pack_dir, safe_extract

__all__ = [
    "MANIFEST_NAME",
    "SCHEMA_VERSION",
    "ArtifactError",
    "ChecksumMismatchError",
    "InputLimits",
    "Manifest",
    "ManifestError",
    "MissingFileError",
    "ModelDir",
    "ModelDirBuilder",
    "Preprocessing",
    "QuantizationInfo",
    "TensorSpec",
    "TrainingInfo",
    "UnknownManifestVersionError",
    "UnsafeArchiveError",
    "carried_files",
    "check_archive",
    "open_model_dir",
    "pack_dir",
    "read_manifest",
    "safe_extract",
    "sha256_file",
    "write_manifest",
]
