"""Finding the project's files (template.yaml, functions/) from wherever the CLI runs."""

from __future__ import annotations

import os
from pathlib import Path

from lambdaforge import envvars
from lambdaforge.local.errors import LocalCloudError


def project_root(explicit: Path | None = None) -> Path:
    """The folder with template.yaml and functions/: explicit, LAMBDAFORGE_PROJECT_ROOT, cwd upwards, source."""
    candidates: list[Path] = []
    if explicit:
        candidates.append(Path(explicit))
    if os.environ.get(envvars.PROJECT_ROOT):
        candidates.append(Path(os.environ[envvars.PROJECT_ROOT]))
    cwd = Path.cwd().resolve()
    candidates.extend([cwd, *cwd.parents])
    candidates.append(Path(__file__).resolve().parents[3])  # src/lambdaforge/local -> repository root
    for folder in candidates:
        if (folder / "template.yaml").is_file() and (folder / "functions").is_dir():
            return folder
    raise LocalCloudError("cannot find the lambdaforge project (a folder with template.yaml and functions/)",
                          hint=f"run from the project or set {envvars.PROJECT_ROOT}")


def functions_dir(explicit: Path | None = None) -> Path:
    if os.environ.get(envvars.FUNCTIONS_DIR):
        return Path(os.environ[envvars.FUNCTIONS_DIR])
    return project_root(explicit) / "functions"
