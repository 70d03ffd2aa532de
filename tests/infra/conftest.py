"""Shared fixtures for the template and workflow checks."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".venv-tools" / "bin"


def tool(name: str) -> str:
    path = TOOLS / name
    if not path.exists():
        pytest.fail(f"{path} is missing: `make tools` builds the tools venv (make test does)")
    return str(path)


def python312_dir() -> str:
    for candidate in sorted(Path.home().glob(".pyenv/versions/3.12*/bin/python3.12")):
        return str(candidate.parent)
    found = shutil.which("python3.12")
    if found is None:
        pytest.fail("Python 3.12 (the Lambda runtime) is needed for `sam build`")
    return str(Path(found).parent)


def tool_env() -> dict[str, str]:
    return {**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "SAM_CLI_TELEMETRY": "0",
            "PATH": f"{python312_dir()}:{os.environ['PATH']}"}


@pytest.fixture(scope="session")
def translated() -> Any:
    from lambdaforge.local.template import translate

    return translate(ROOT / "template.yaml")


@pytest.fixture(scope="session")
def asl() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ROOT / "infra" / "statemachine" / "retrain.asl.json").read_text())
    return data
