"""AWS behaviour moto leaves out where our code depends on it, as patches for moto's classes.

The local cloud applies them for as long as it runs; the in-process moto tests apply them with
`applied()`. Each patch makes moto refuse what AWS refuses.

- Lambda aliases: every update gets a new RevisionId, and UpdateAlias with a RevisionId that is
  no longer current fails with PreconditionFailedException (moto ignores RevisionId).
- CloudWatch alarms (`lambdaforge.local.alarms`): state changes are kept as alarm history,
  DescribeAlarmHistory exists, PutMetricData evaluates the alarms that watch the metric, and
  PutMetricAlarm on an existing alarm keeps its state.
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
    from lambdaforge.local import alarms

    return [*alias_revision_patches(), *alarms.patches()]


_ABSENT = object()  # a patched attribute the class did not define itself


class Patcher:
    """Class attributes replaced for a while and put back exactly as they were (the local cloud's
    executors and these fidelity patches both go through it)."""

    def __init__(self) -> None:
        self._done: list[tuple[Any, str, Any]] = []

    def patch(self, owner: Any, name: str, replacement: Any) -> None:
        self._done.append((owner, name, owner.__dict__.get(name, _ABSENT)))
        setattr(owner, name, replacement)

    def restore(self) -> None:
        for owner, name, original in reversed(self._done):
            if original is _ABSENT:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
        self._done.clear()


@contextmanager
def applied() -> Iterator[None]:
    """The patches, for the duration of a block (in-process moto)."""
    patcher = Patcher()
    try:
        for owner, name, replacement in patches():
            patcher.patch(owner, name, replacement)
        yield
    finally:
        patcher.restore()
