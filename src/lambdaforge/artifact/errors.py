"""Errors of the model-directory contract. Every message names the file and the problem."""

from __future__ import annotations

from lambdaforge.errors import LambdaforgeError


class ArtifactError(LambdaforgeError):
    """The model directory or archive cannot be trusted or used."""


class ManifestError(ArtifactError):
    """manifest.json is missing, not JSON, or does not match the schema."""


class UnknownManifestVersionError(ManifestError):
    """manifest.json declares a schema version this lambdaforge cannot read."""


class MissingFileError(ArtifactError):
    """A file the manifest lists is not in the model directory."""


class ChecksumMismatchError(ArtifactError):
    """A file's sha256 differs from the one recorded in the manifest."""


class UnsafeArchiveError(ArtifactError):
    """A tarball member would escape the target, is a link or device, or the archive is too large."""
