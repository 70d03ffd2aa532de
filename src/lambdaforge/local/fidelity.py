"""AWS behaviour moto leaves out where our code depends on it, as patches for moto's classes.

The local cloud applies them for as long as it runs; the in-process moto tests apply them with
`applied()`. Each patch makes moto refuse what AWS refuses.

- Lambda aliases: every update gets a new RevisionId, and UpdateAlias with a RevisionId that is
  no longer current fails with PreconditionFailedException (moto ignores RevisionId).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote

Patch = tuple[Any, str, Any]  # (class, attribute, replacement)


def alias_revision_patches() -> list[Patch]:
    from moto.awslambda.exceptions import PreconditionFailedException
    from moto.awslambda.models import LambdaAlias
    from moto.awslambda.responses import LambdaResponse

    update_alias_model = LambdaAlias.update
    update_alias_response = LambdaResponse.update_alias

    def update(alias: Any, *args: Any, **kwargs: Any) -> None:
        update_alias_model(alias, *args, **kwargs)
        alias.revision_id = str(uuid.uuid4())

    def update_alias(response: Any) -> Any:
        expected = json.loads(response.body or "{}").get("RevisionId")
        if expected:
            function_name = unquote(response.path.rsplit("/")[-3])
            alias_name = unquote(response.path.rsplit("/", 2)[-1])
            current = response.backend.get_alias(alias_name, function_name).revision_id
            if current != expected:
                raise PreconditionFailedException(
                    "The Revision Id provided does not match the latest Revision Id. "
                    "Call the GetAlias API to retrieve the latest Revision Id")
        return update_alias_response(response)

    return [(LambdaAlias, "update", update), (LambdaResponse, "update_alias", update_alias)]


def patches() -> list[Patch]:
    return alias_revision_patches()


@contextmanager
def applied() -> Iterator[None]:
    """The patches, for the duration of a block (in-process moto)."""
    done: list[tuple[Any, str, Any]] = []
    try:
        for owner, name, replacement in patches():
            done.append((owner, name, owner.__dict__.get(name)))
            setattr(owner, name, replacement)
        yield
    finally:
        for owner, name, original in reversed(done):
            if original is None:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
