"""The capability packages form layers: each imports only from layers below it.

A lower layer that imports a higher one (export importing training, cloud importing local) ties
a small image or a cloud code path to code it must not need. Only the CLI's target choice may
import the local cloud.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "lambdaforge"

# Lowest first. A module may import its own package and any package of a LOWER layer only.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__init__", "errors"),
    ("envvars", "timing", "onnxsession", "manifestrefs"),
    ("aws", "observability", "project"),
    ("s3transfer",),
    ("artifact", "registry"),
    ("recipes",),
    ("export", "quantize", "runtime"),
    ("training",),
    ("pipeline",),
    ("cloud", "bundle"),
    ("local",),
    ("cli",),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
# The one module outside local/ that may import it: the CLI's choice between the local cloud and a stack.
LOCAL_GATE = "cli/target.py"


def _package_of(path: Path) -> str:
    first = path.relative_to(PACKAGE).parts[0]
    return first.removesuffix(".py")


def _imported_packages(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "lambdaforge":
                names += [f"lambdaforge.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        found |= {name.split(".")[1] for name in names if name.startswith("lambdaforge.")}
    return found


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_package_has_a_layer() -> None:
    unknown = {_package_of(path) for path in _modules()} - set(RANK)
    assert not unknown, f"add {sorted(unknown)} to LAYERS in {Path(__file__).name}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_no_import_reaches_a_higher_or_sibling_layer(path: Path) -> None:
    own = _package_of(path)
    bad = sorted(
        imported for imported in _imported_packages(path) - {own}
        if imported in RANK and own in RANK and RANK[imported] >= RANK[own]
    )
    assert not bad, f"{path.relative_to(ROOT)} ({own}, layer {RANK.get(own)}) imports {bad}"


def test_only_the_cli_target_choice_imports_the_local_cloud() -> None:
    outside = [path for path in _modules() if _package_of(path) != "local"]
    outside += sorted((ROOT / "functions").rglob("*.py"))
    importers = sorted(
        path.relative_to(ROOT).as_posix() for path in outside if "local" in _imported_packages(path)
    )
    assert importers == [f"src/lambdaforge/{LOCAL_GATE}"]

