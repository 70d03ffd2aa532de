"""Which files a manifest makes the stages open, for both manifest readers (pydantic's in
`lambdaforge.artifact` and the cold path's in `lambdaforge.runtime.modelfiles`): each file named here
must be listed, and so checksummed, so the two readers must never disagree on it. No pydantic here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class _Tokenized(Protocol):
    @property
    def tokenizer(self) -> str | None: ...


class _Reported(Protocol):
    @property
    def report(self) -> str: ...


class _Manifest(Protocol):
    @property
    def model_file(self) -> str: ...
    @property
    def eval_file(self) -> str: ...
    @property
    def assets(self) -> Sequence[str]: ...
    @property
    def weights_file(self) -> str | None: ...
    @property
    def calibration_file(self) -> str | None: ...
    @property
    def preprocessing(self) -> _Tokenized: ...
    @property
    def quantization(self) -> _Reported | None: ...


def referenced_files(manifest: _Manifest) -> list[str]:
    """Files the stages open; each must be listed (and so checksummed) in `files`."""
    refs = [manifest.model_file, manifest.eval_file, *manifest.assets]
    for optional in (manifest.weights_file, manifest.calibration_file, manifest.preprocessing.tokenizer):
        if optional:
            refs.append(optional)
    if manifest.quantization:
        refs.append(manifest.quantization.report)
    return refs
