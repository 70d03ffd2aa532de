"""The training job runs what the tests ran: the bundle's lock, the template's image, the project's torch pin
and this test process agree, and the lock is complete and hash-checked."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from lambdaforge.training.errors import TrainingError
from lambdaforge.training.lock import LOCK, check_torch, locked_python, pins
from tests.infra.conftest import ROOT


def _image_tag() -> str:
    from lambdaforge.project import load_template

    return str(load_template(ROOT / "template.yaml")["Mappings"]["Constants"]["Training"]["ImageTag"])


def _makefile_torch() -> str:
    match = re.search(r"^TORCH := (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, "the Makefile names the torch it installs as TORCH"
    return match.group(1)


def test_the_lock_the_image_and_the_project_agree_on_torch_and_python() -> None:
    import torch

    from lambdaforge.cloud.preflight import TRAINING_FRAMEWORK_VERSION, TRAINING_PY_VERSION

    locked = pins()
    tested = torch.__version__.split("+", 1)[0]
    assert locked["torch"] == _makefile_torch() == tested, (locked["torch"], _makefile_torch(), tested)
    pyproject = (ROOT / "pyproject.toml").read_text()
    train_range = re.search(r'"torch(>=[^"]+)"', pyproject)
    assert train_range and tested in SpecifierSet(train_range.group(1)), "pyproject's train extra admits it"
    # the image provides Python (and CUDA); its tag's Python is the lock's and the tests'
    tag = _image_tag()
    framework, _, python = tag.split("-")[:3]
    assert python == TRAINING_PY_VERSION == "py" + locked_python().replace(".", "")
    assert locked_python() == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert framework.startswith(TRAINING_FRAMEWORK_VERSION), (framework, TRAINING_FRAMEWORK_VERSION)


def test_every_pin_is_the_version_installed_here() -> None:
    differing = {}
    for name, version in pins().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # a CUDA library of the GPU torch build: the CPU build here does not use it
        if installed.split("+", 1)[0] != version:
            differing[name] = (version, installed)
    assert not differing, f"pinned vs installed here (run `make lock`): {differing}"
    assert {"torch", "onnxruntime", "transformers", "scikit-learn", "tokenizers"} <= set(pins())


def test_every_requirement_is_hashed_and_every_dependency_is_pinned() -> None:
    text = LOCK.read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text)
    requirements = [b for b in blocks if re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*==", b)]
    unhashed = [b.split()[0] for b in requirements if "--hash=sha256:" not in b]
    assert requirements and not unhashed, unhashed
    locked = pins()
    missing = set()
    for name in locked:
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for raw in requires:
            req = Requirement(raw)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            if canonicalize_name(req.name) not in locked:
                missing.add(f"{req.name} (needed by {name})")
    assert not missing, f"pip would refuse the lock in hash-checking mode: {sorted(missing)}"
    top = [line.strip() for line in (ROOT / "packaging/training/requirements.in").read_text().splitlines()
           if line.strip() and not line.startswith("#")]
    assert {canonicalize_name(n) for n in top} <= set(locked)


def test_the_lock_resolves_completely_with_hashes_on_the_training_images_platform(tmp_path: Path) -> None:
    """What the job's pip does, for the image's platform (x86_64 Linux, CPython 3.11) rather than this
    machine's: torch's CUDA libraries, which the CPU torch here does not declare, must be in the lock too.
    PyPI only, as in the image (none of this machine's pip configuration)."""
    platforms = [f"--platform=manylinux_2_{minor}_x86_64" for minor in range(17, 29)]
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": "", "PIP_EXTRA_INDEX_URL": ""}
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--only-binary=:all:",
         *platforms, "--platform=manylinux2014_x86_64", "--python-version=3.11", "--implementation=cp",
         "--abi=cp311", "--abi=abi3", "--abi=none", "--require-hashes", "-r", str(LOCK), "--report", str(report),
         "-q"], capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    installed = {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"]
                 for i in json.loads(report.read_text())["install"]}
    assert installed == pins(), set(installed).symmetric_difference(pins())
    assert {"nvidia-cudnn-cu13", "triton"} <= set(installed)  # the GPU build's libraries are locked


def test_the_harness_refuses_an_untested_torch() -> None:
    lock = "torch==2.13.0 \\\n    --hash=sha256:00\n"
    check_torch("2.13.0+cpu", lock)
    check_torch("2.13.0+cu130", lock)
    with pytest.raises(TrainingError, match=r"has torch 2.5.1\+cu124, but this bundle was tested with torch 2.13.0"):
        check_torch("2.5.1+cu124", lock)
    with pytest.raises(TrainingError, match="torch is not pinned"):
        check_torch("2.13.0", "numpy==2.0\n")
