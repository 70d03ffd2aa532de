"""Checkpoints for managed spot training: written atomically, read with weights_only=True.

SageMaker syncs /opt/ml/checkpoints to S3 and restores it when a spot job restarts, so
resuming is reading the newest complete checkpoint there.

A checkpoint is complete only once `latest.json` names it with its sha256. The pointer is
written after the `.pt` file, so a process killed between the two leaves a `.pt` file that
no pointer names: it is ignored, and the run resumes from the previous complete checkpoint
(or from scratch when there is none). The pointer keeps the hashes of every checkpoint still
on disk, so a pointed-to file that is torn or unreadable falls back to an older complete one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lambdaforge.artifact.modeldir import sha256_file
from lambdaforge.training.errors import CheckpointError

KEEP = 2
POINTER = "latest.json"


def save_checkpoint(directory: Path, step: int, state: dict[str, Any]) -> Path:
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"checkpoint-{step:08d}.pt"
    tmp = target.with_suffix(".pt.tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, target)
        # Older entries stay only if they come before this step and their file is here: a restored spot
        # job may have a pointer naming files from an abandoned future, or files S3 never received.
        kept = [e for e in complete_checkpoints(directory)
                if e["step"] < step and (directory / e["file"]).is_file()][:KEEP - 1]
        entry: dict[str, Any] = {"step": step, "file": target.name, "sha256": sha256_file(target)}
        complete = [entry, *kept]
        meta_tmp = directory / f".{POINTER}.tmp"
        meta_tmp.write_text(json.dumps({**entry, "complete": complete}))
        os.replace(meta_tmp, directory / POINTER)
    except OSError as exc:
        raise CheckpointError(f"{target}: cannot write checkpoint ({exc})") from exc
    keep = {e["file"] for e in complete}
    for old in directory.glob("checkpoint-*.pt"):
        if old.name not in keep:
            old.unlink(missing_ok=True)
    return target


def complete_checkpoints(directory: Path) -> list[dict[str, Any]]:
    """The checkpoints the pointer vouches for, newest first: {"step", "file", "sha256"} each."""
    try:
        meta = json.loads((directory / POINTER).read_text())
    except (OSError, json.JSONDecodeError):
        return []
    if not isinstance(meta, dict):
        return []
    entries = meta.get("complete") or [meta]  # a pointer from before the history was kept
    valid = [e for e in entries if isinstance(e, dict) and isinstance(e.get("step"), int)
             and isinstance(e.get("sha256"), str) and _is_checkpoint_name(e.get("file"))]
    return sorted(valid, key=lambda e: e["step"], reverse=True)


def _is_checkpoint_name(name: object) -> bool:
    """Only a plain `checkpoint-*.pt` name in this folder: a pointer cannot lead elsewhere."""
    return isinstance(name, str) and name == Path(name).name and name.startswith("checkpoint-") \
        and name.endswith(".pt")


def latest_complete_step(directory: Path) -> int | None:
    """The step of the newest complete checkpoint whose file is on disk (no torch needed)."""
    for entry in complete_checkpoints(directory):
        if (directory / entry["file"]).is_file():
            return int(entry["step"])
    return None


def load_latest(directory: Path) -> dict[str, Any] | None:
    """The newest complete checkpoint whose bytes match the pointer and that loads as tensors only."""
    import torch

    for entry in complete_checkpoints(directory):
        path = directory / entry["file"]
        if not path.is_file():
            continue  # rotated away
        if sha256_file(path) != entry["sha256"]:
            print(f"[lambdaforge] skipping checkpoint {path.name}: sha256 does not match {POINTER}", flush=True)
            continue
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a file that is not tensors-only raises many kinds of errors
            print(f"[lambdaforge] skipping unreadable checkpoint {path.name}: {type(exc).__name__}", flush=True)
            continue
        if isinstance(state, dict) and "step" in state:
            return state
    return None
