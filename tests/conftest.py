"""Shared fixtures: models trained once per session through the real entry point."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "tests" / "events"

# Never reach a real AWS account from the tests.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_REGION", "us-east-1")
os.environ.pop("AWS_PROFILE", None)


def load_event(name: str, overrides: Mapping[str, object] | None = None) -> dict[str, Any]:
    """The event fixture tests/events/<name>.json (written by scripts/make_events.py), with the fields a
    test varies replaced by dotted path, e.g. {"detail.object.key": key}; a path that does not exist
    in the fixture is an error, so a test cannot invent fields the real event lacks."""
    event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    for path, value in (overrides or {}).items():
        *parents, last = path.split(".")
        node: Any = event
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if last not in node:
            raise KeyError(f"{name}.json has no field {path!r}")
        node[last] = value
    return event


# The text recipe's former sample: 520 easy tickets in four classes (billing, technical, account, shipping) that
# the fp32 model scores 1.0 on. The tests train on it: the shipped 2,400-row set takes minutes to train.
SMALL_TICKETS = ROOT / "tests" / "data" / "support_tickets_small.csv"


def sample_data(recipe: str, out_dir: Path) -> Path:
    """The data the tests train `recipe` on: its shipped sample, but the small ticket set for text."""
    from lambdaforge.recipes import get_recipe

    if recipe == "text":
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / SMALL_TICKETS.name
        shutil.copyfile(SMALL_TICKETS, target)
        return target
    return get_recipe(recipe).write_sample_data(out_dir)


def train_model(out_root: Path, recipe: str, hps: dict[str, object] | None = None) -> Path:
    """Train through `python -m lambdaforge.training` in a temporary /opt/ml tree."""
    from lambdaforge.training.runner import JobTree, run_entry_point

    data = sample_data(recipe, out_root / "data")
    tree = JobTree(out_root / "opt" / "ml")
    tree.prepare({"train": data}, {"recipe": recipe, **(hps or {})})
    lines: list[str] = []
    code, reason = run_entry_point(tree, {"train": data}, f"test-{recipe}", on_line=lines.append)
    assert code == 0, f"training failed: {reason}\n" + "\n".join(lines[-30:])
    return tree.model_dir


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_model(tmp_path_factory.mktemp("digits"), "digits", {"epochs": 10})


def quantized(model: Path, root: Path) -> Path:
    """The auto-quantized model directory, gate passed."""
    from lambdaforge.artifact import open_model_dir
    from lambdaforge.quantize import quantize_model_dir

    out = root / "model"
    report = quantize_model_dir(open_model_dir(model), out).report
    assert report.gate_passed, report.gate_reason
    return out


@pytest.fixture(scope="session")
def digits_int8(digits_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return quantized(digits_model, tmp_path_factory.mktemp("digits-int8"))


@pytest.fixture(scope="session")
def text_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_model(tmp_path_factory.mktemp("text"), "text", {"epochs": 6})


@pytest.fixture(scope="session")
def text_int8(text_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return quantized(text_model, tmp_path_factory.mktemp("text-int8"))


@pytest.fixture
def python() -> str:
    return sys.executable
