"""Errors of the model registry: it does not hold what the caller needs."""

from __future__ import annotations

from lambdaforge.errors import LambdaforgeError


class RegistryError(LambdaforgeError):
    """The registry does not hold what the caller needs."""


class NoRegistryTableError(RegistryError):
    """No registry table is configured (REGISTRY_TABLE)."""


class UnknownVersionError(RegistryError):
    """The recipe has no such model version."""


class VersionExistsError(RegistryError):
    """A model version is written once; this one already exists."""


class NothingToRollBackError(RegistryError):
    """There is no live version, or no earlier live version to go back to."""


class UnpublishedVersionError(RegistryError):
    """The version was never published as a Lambda version, so no alias can point at it."""


class ConcurrentUpdateError(RegistryError):
    """Live moved between reading it and writing the change (another promotion or rollback won)."""
