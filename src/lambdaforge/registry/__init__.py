"""The model registry, one DynamoDB table in two rooms.

- `Catalog`: the version catalogue (per recipe the versions, and candidate, live, previous);
- `Runs`: run coordination (the one-run-per-recipe lock, the coalesced pending dataset, the run log).

Both open the same table; its key layout is defined once, in `keys`.
"""

from __future__ import annotations

from lambdaforge.registry.catalog import Catalog, CatalogState, VersionRecord
from lambdaforge.registry.errors import (
    ConcurrentUpdateError,
    NoRegistryTableError,
    NothingToRollBackError,
    RegistryError,
    UnknownVersionError,
    UnpublishedVersionError,
    VersionExistsError,
)
from lambdaforge.registry.runs import Runs, RunState

__all__ = [
    "Catalog",
    "CatalogState",
    "ConcurrentUpdateError",
    "NoRegistryTableError",
    "NothingToRollBackError",
    "RegistryError",
    "RunState",
    "Runs",
    "UnknownVersionError",
    "UnpublishedVersionError",
    "VersionExistsError",
    "VersionRecord",
]
