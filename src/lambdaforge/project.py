"""The project's files, found from wherever the CLI runs: template.yaml, functions/, and reading the template.

Deploying needs them as much as the local cloud does, so they belong to neither.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from lambdaforge import envvars
from lambdaforge.errors import ProjectError


def project_root(explicit: Path | None = None) -> Path:
    """The folder with template.yaml and functions/: explicit, LAMBDAFORGE_PROJECT_ROOT, cwd upwards, source."""
    candidates: list[Path] = []
    if explicit:
        candidates.append(Path(explicit))
    if os.environ.get(envvars.PROJECT_ROOT):
        candidates.append(Path(os.environ[envvars.PROJECT_ROOT]))
    cwd = Path.cwd().resolve()
    candidates.extend([cwd, *cwd.parents])
    candidates.append(Path(__file__).resolve().parents[2])  # src/lambdaforge -> repository root
    for folder in candidates:
        if (folder / "template.yaml").is_file() and (folder / "functions").is_dir():
            return folder
    raise ProjectError("cannot find the lambdaforge project (a folder with template.yaml and functions/)",
                       hint=f"run from the project or set {envvars.PROJECT_ROOT}")


def functions_dir(explicit: Path | None = None) -> Path:
    if os.environ.get(envvars.FUNCTIONS_DIR):
        return Path(os.environ[envvars.FUNCTIONS_DIR])
    return project_root(explicit) / "functions"


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags (!Ref, !Sub, !GetAtt, ...)."""


def _construct_tag(loader: _CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    except (OSError, yaml.YAMLError) as exc:
        raise ProjectError(f"{path}: cannot be read as a CloudFormation template ({exc})") from exc
    if not isinstance(data, dict) or "Resources" not in data:
        raise ProjectError(f"{path}: no Resources section")
    return data
