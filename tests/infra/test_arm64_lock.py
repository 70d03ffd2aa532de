"""Architecture=arm64: each image's arm64 lock pins exactly what its x86_64 lock pins, resolves completely
with hashes for Lambda's Python on Linux aarch64 (what the arm64 image's `pip install --require-hashes
--no-deps` does), and the template's Powertools layers and the Dockerfiles follow the parameter.

The resolution asks the package index (PyPI, as the image does): without it the test fails, it does not skip."""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from lambdaforge.bundle.build import SlimSpec
from lambdaforge.bundle.lock_arm64 import pip_platform_args, pypi_env, read_pins, render
from lambdaforge.local.intrinsics import Resolver
from lambdaforge.project import load_template
from tests.infra.conftest import ROOT

FUNCTIONS = ("inference", "quantize")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def _lock(function: str, arch: str) -> Path:
    return ROOT / "packaging" / function / ("requirements.txt" if arch == "x86_64" else "requirements-arm64.txt")


def _hashes(path: Path) -> dict[str, set[str]]:
    """canonical name -> the sha256 hashes of its pin, in file order of pins."""
    found: dict[str, set[str]] = {}
    current = ""
    for line in path.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            assert current not in found, f"{path.name}: {current} pinned twice"
            found[current] = set()
        elif line.lstrip().startswith("--hash=sha256:"):
            found[current].add(line.split("sha256:", 1)[1].rstrip(" \\"))
    return found


def _pins(path: Path) -> dict[str, str]:
    return {canonicalize_name(m.group(1)): m.group(2) for m in map(_PIN.match, path.read_text().splitlines()) if m}


def _aarch64_markers() -> dict[str, str]:
    """PEP 508 marker values of the arm64 image: Amazon Linux 2023 on aarch64, CPython 3.12."""
    env = dict(default_environment())
    env.update(platform_machine="aarch64", platform_system="Linux", sys_platform="linux", os_name="posix",
               implementation_name="cpython", platform_python_implementation="CPython", python_version="3.12",
               python_full_version="3.12.0", implementation_version="3.12.0", extra="")
    return env


@pytest.mark.parametrize("function", FUNCTIONS)
def test_the_arm64_lock_pins_what_the_x86_64_lock_pins(function: str) -> None:
    x86, arm = _lock(function, "x86_64"), _lock(function, "arm64")
    assert arm.is_file(), f"{arm} is missing: `make lock` writes it"
    assert _pins(arm) == _pins(x86), "the platforms drifted: run `make lock`"
    x86_hashes, arm_hashes = _hashes(x86), _hashes(arm)
    assert all(arm_hashes.values()), [n for n, h in arm_hashes.items() if not h]
    # pip-compile hashed every file of each pinned release; the arm64 wheels are files of those releases
    foreign = {name: hashes - x86_hashes[name] for name, hashes in arm_hashes.items() if hashes - x86_hashes[name]}
    assert not foreign, f"arm64 wheels that are not files of the releases requirements.txt pins: {foreign}"
    # the arm64 lock is the x86_64 lock with other hashes (same comments, nothing edited by hand)
    expected = render(x86.read_text(), {name: sorted(arm_hashes[canonicalize_name(name)]) for name in read_pins(x86)})
    assert arm.read_text() == expected, "requirements-arm64.txt is stale or edited: run `make lock`"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_the_arm64_wheel_set_resolves_completely_with_hashes(function: str, tmp_path: Path) -> None:
    lock = _lock(function, "arm64")
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-deps",
           "--require-hashes", *pip_platform_args(), "-r", str(lock), "--report", str(report), "-q"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=pypi_env(), timeout=900, check=False)
    assert proc.returncode == 0, (f"pip cannot install {lock.relative_to(ROOT)} for cp312 manylinux aarch64 "
                                  f"(the package index must be reachable):\n{proc.stderr[-3000:]}")
    install: list[dict[str, Any]] = json.loads(report.read_text())["install"]
    installed = {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"] for i in install}
    assert installed == _pins(lock), set(installed).symmetric_difference(_pins(lock))

    for item in install:  # wheels for the arm64 image only: cp312/abi3 aarch64 builds or pure Python
        filename = item["download_info"]["url"].split("#", 1)[0].rsplit("/", 1)[-1]
        assert filename.endswith(".whl"), filename
        tags = parse_wheel_filename(filename)[3]
        assert any(t.platform == "any" or (t.platform.endswith("_aarch64") and t.platform.startswith("manylinux"))
                   for t in tags), filename
        assert any(t.interpreter in ("cp312", "py3", "py312") or t.abi == "abi3" for t in tags), filename

    # complete: every dependency an aarch64 CPython 3.12 needs is pinned at a version it accepts, or is
    # left out on purpose by slim.txt (the image tests prove those are never imported)
    excluded = set(SlimSpec.read(ROOT / "packaging" / function / "slim.txt").excluded)
    markers = _aarch64_markers()
    unmet = []
    for item in install:
        for raw in item["metadata"].get("requires_dist") or []:
            req = Requirement(raw)
            if req.marker is not None and not req.marker.evaluate(markers):
                continue
            name = canonicalize_name(req.name)
            if name in excluded:
                continue
            if name not in installed:
                unmet.append(f"{req} (needed by {item['metadata']['name']}): not locked")
            elif not req.specifier.contains(Version(installed[name]), prereleases=True):
                unmet.append(f"{req} (needed by {item['metadata']['name']}): locked {installed[name]}")
    assert not unmet, unmet


def test_the_template_follows_the_architecture_parameter() -> None:
    template = load_template(ROOT / "template.yaml")
    param = template["Parameters"]["Architecture"]
    assert param["AllowedValues"] == ["x86_64", "arm64"] and param["Default"] == "x86_64"
    groups = template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    assert any("Architecture" in g["Parameters"] for g in groups)
    assert template["Globals"]["Function"]["Architectures"] == [{"Ref": "Architecture"}]

    layers = []
    for lid, resource in template["Resources"].items():
        props = resource.get("Properties") or {}
        if resource["Type"] == "AWS::Serverless::Function":
            # no function pins an architecture of its own
            assert props.get("Architectures", [{"Ref": "Architecture"}]) == [{"Ref": "Architecture"}], lid
        layers += [layer for layer in props.get("Layers", []) if "Powertools" in json.dumps(layer)]
    assert len(layers) == 2  # the trigger and promote functions (the images install Powertools themselves)

    for arch in ("x86_64", "arm64"):
        resolver = Resolver(template, {"Architecture": arch}, region="us-east-1", account="123456789012",
                            stack_name="s")
        arns = {resolver.resolve(layer) for layer in layers}
        version = template["Parameters"]["PowertoolsLayerVersion"]["Default"]
        assert arns == {f"arn:aws:lambda:us-east-1:017000801446:layer:AWSLambdaPowertoolsPythonV3-python312-{arch}"
                        f":{version}"}, arns


@pytest.mark.parametrize("function", FUNCTIONS)
def test_the_dockerfile_installs_the_lock_of_the_platform_it_builds_for(function: str, tmp_path: Path) -> None:
    """The RUN that picks the lock, run by this machine's shell for each value BuildKit's TARGETARCH takes
    (and empty, as the classic builder leaves it: then `uname -m` of the target platform decides)."""
    text = (ROOT / "packaging" / function / "Dockerfile").read_text()
    assert re.search(r"^ARG TARGETARCH$", text, re.MULTILINE)
    assert "${PACKAGING_DIR}/requirements-arm64.txt" in text
    run = re.search(r'^RUN (case "\$\{TARGETARCH.*?--target "\$\{LAMBDA_TASK_ROOT\}")$', text, re.MULTILINE | re.DOTALL)
    assert run, "the RUN that installs the lock"
    script = run.group(1).replace("\\\n", "").replace("pip install", "echo")
    host = {"x86_64": "requirements.txt", "aarch64": "requirements-arm64.txt"}.get(platform.machine())
    for target, lock in (("amd64", "requirements.txt"), ("arm64", "requirements-arm64.txt"), ("", host)):
        if lock is None:
            continue
        proc = subprocess.run(["sh", "-c", script], env={"TARGETARCH": target, "LAMBDA_TASK_ROOT": str(tmp_path),
                              "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        assert f"/tmp/build/{lock}" in proc.stdout.split(), (target, proc.stdout)
    proc = subprocess.run(["sh", "-c", script], env={"TARGETARCH": "riscv64", "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, check=False)
    assert proc.returncode != 0 and "no lock for architecture riscv64" in proc.stderr
