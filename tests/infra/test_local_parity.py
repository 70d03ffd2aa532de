"""The template and the local cloud cannot drift apart: every resource type the template produces
is created locally or listed as cloud-only with a reason, and nothing is listed that is not used."""

from __future__ import annotations

from typing import Any

from lambdaforge.local.stack import CLOUD_ONLY, CREATORS


def test_every_resource_type_is_local_or_cloud_only_with_a_reason(translated: Any) -> None:
    types = translated.resource_types()
    missing = types - set(CREATORS) - set(CLOUD_ONLY)
    assert not missing, f"add a creator in lambdaforge.local.stack or a CLOUD_ONLY reason for: {sorted(missing)}"
    assert not set(CREATORS) & set(CLOUD_ONLY)
    assert all(len(reason) > 20 for reason in CLOUD_ONLY.values())


def test_no_stale_entries(translated: Any) -> None:
    types = translated.resource_types()
    assert set(CLOUD_ONLY) <= types, f"cloud-only entries the template no longer has: {set(CLOUD_ONLY) - types}"
    assert set(CREATORS) <= types, f"creators for types the template no longer has: {set(CREATORS) - types}"
