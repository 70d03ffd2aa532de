"""Checkpoints for managed spot training: written atomically, read with weights_only=True.

SageMaker syncs /opt/ml/checkpoints to S3 and restores it when a spot job restarts, so
resuming is reading the newest valid checkpoint there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lambdaforge.artifact.modeldir import sha256_file
from lambdaforge.training.errors import CheckpointError

KEEP = 2


def save_checkpoint(directory: Path, step: int, state: dict[str, Any]) -> Path:
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"checkpoint-{step:08d}.pt"
    tmp = target.with_suffix(".pt.tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, target)
        meta = {"step": step, "file": target.name, "sha256": sha256_file(target)}
        meta_tmp = directory / ".latest.json.tmp"
        meta_tmp.write_text(json.dumps(meta))
        os.replace(meta_tmp, directory / "latest.json")
    except OSError as exc:
        raise CheckpointError(f"{target}: cannot write checkpoint ({exc})") from exc
    for old in sorted(directory.glob("checkpoint-*.pt"))[:-KEEP]:
        old.unlink(missing_ok=True)
    return target


def load_latest(directory: Path) -> dict[str, Any] | None:
    """The newest checkpoint whose bytes match latest.json (or the newest readable one)."""
    import torch

    if not directory.is_dir():
        return None
    candidates = sorted(directory.glob("checkpoint-*.pt"), reverse=True)
    expected: dict[str, str] = {}
    meta_path = directory / "latest.json"
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            expected[meta["file"]] = meta["sha256"]
        except (json.JSONDecodeError, KeyError, TypeError):
            expected = {}
    for path in candidates:
        if path.name in expected and sha256_file(path) != expected[path.name]:
            continue  # torn or tampered: fall back to an older one
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated file raises many kinds of errors
            print(f"[lambdaforge] skipping unreadable checkpoint {path.name}: {type(exc).__name__}", flush=True)
            continue
        if isinstance(state, dict) and "step" in state:
            return state
    return None
