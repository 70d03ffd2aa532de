"""Writing a new model directory: every stage that makes one (export, re-export, quantize) goes through here.

The builder places the new files, carries the samples and assets over from the source
directory, and writes the checksummed manifest last; what it returns is already verified
(it has just hashed every file), so nobody re-opens what was just written.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

from lambdaforge.artifact.manifest import Manifest
from lambdaforge.artifact.modeldir import ModelDir, write_manifest


def carried_files(manifest: Manifest) -> list[str]:
    """What a derived model directory keeps from its source: samples, tokenizer and recipe assets."""
    keep = [manifest.eval_file, *manifest.assets]
    for optional in (manifest.calibration_file, manifest.preprocessing.tokenizer):
        if optional:
            keep.append(optional)
    return list(dict.fromkeys(keep))


class ModelDirBuilder:
    """A model directory being written into `root`; `finish` makes it one."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, rel: str) -> Path:
        """Where the stage writes the file `rel` (its folder exists)."""
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def add(self, rel: str, src: Path) -> Path:
        target = self.path(rel)
        shutil.copyfile(src, target)
        return target

    def add_all(self, files: Mapping[str, Path]) -> None:
        for rel, src in files.items():
            self.add(rel, src)

    def carry(self, source: ModelDir, rels: Iterable[str]) -> None:
        """Copy files of a verified source directory over unchanged."""
        self.add_all({rel: source.file(rel) for rel in dict.fromkeys(rels)})

    def finish(self, manifest: Manifest) -> ModelDir:
        """Checksum every file into the manifest, write it, and return the finished directory."""
        return ModelDir(path=self.root, manifest=write_manifest(self.root, manifest))
