"""The arm64 twin of an image lock: the same pins, with the hashes of the wheels an arm64 image installs.

    python -m lambdaforge.bundle.lock_arm64 packaging/inference/requirements.txt \\
        packaging/inference/requirements-arm64.txt

`make lock` runs it after pip-compile has written the x86_64 lock. Nothing is resolved again: each pin
keeps its version (so the two platforms cannot drift), and pip, asked for Lambda's Python on Linux
aarch64 (`--platform`, `--only-binary`, `--no-deps`, dry run), names the wheel it would install for it.
It is asked twice, newest glibc first and oldest first, so the lock holds both the wheel an Amazon Linux
2023 pip (glibc 2.34) prefers and the oldest-glibc one, where a release has several. PyPI only, like the
image's pip (this machine's pip configuration, with its local indexes and wheel folders, is left out).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from lambdaforge.bundle.build import LAMBDA_PYTHON
from lambdaforge.bundle.errors import BundleError

# What an arm64 Lambda image's pip accepts (Amazon Linux 2023: glibc 2.34), most preferred first.
ARM64_PLATFORMS = (*(f"manylinux_2_{minor}_aarch64" for minor in range(34, 16, -1)), "manylinux2014_aarch64")
# Each order is one dry run (pip prefers the platform named first); the union of their wheels is the lock.
_PLATFORM_ORDERS = (ARM64_PLATFORMS, ARM64_PLATFORMS[::-1])
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
_HEADER = ("# The arm64 twin of requirements.txt: the same pins, the hashes of the cp312 manylinux aarch64 "
           "(and pure-Python) wheels.\n# Written by `python -m lambdaforge.bundle.lock_arm64` (make lock); "
           "do not edit.\n")


def pypi_env() -> dict[str, str]:
    """This process's environment without this machine's pip configuration (local indexes, find-links)."""
    return {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": "", "PIP_EXTRA_INDEX_URL": "",
            "PIP_CONSTRAINT": "", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def pip_platform_args(platforms: tuple[str, ...] = ARM64_PLATFORMS) -> list[str]:
    """The `pip install` options that install for Lambda's Python on the given platforms, wheels only."""
    return ["--only-binary=:all:", *[f"--platform={p}" for p in platforms], f"--python-version={LAMBDA_PYTHON}",
            "--implementation=cp", f"--abi=cp{LAMBDA_PYTHON.replace('.', '')}", "--abi=abi3", "--abi=none"]


def read_pins(lock: Path) -> dict[str, str]:
    """name -> version of every `name==version` line of a lock."""
    return {m.group(1): m.group(2) for m in map(_PIN.match, lock.read_text().splitlines()) if m}


def dry_run_report(args: list[str], report_dir: Path, name: str) -> list[dict[str, object]]:
    """`pip install --dry-run --report` for the arm64 image; the report's `install` entries."""
    report = report_dir / f"{name}.json"
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--no-deps",
           "--report", str(report), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=pypi_env(), timeout=900, check=False)
    if proc.returncode != 0:
        raise BundleError(f"pip could not resolve the arm64 wheels ({' '.join(cmd[3:])}):\n{proc.stderr[-3000:]}")
    install: list[dict[str, object]] = json.loads(report.read_text())["install"]
    return install


def _sha256(item: dict[str, object]) -> str:
    info = item["download_info"]
    assert isinstance(info, dict)
    archive = info.get("archive_info") or {}
    digest = (archive.get("hashes") or {}).get("sha256") or str(archive.get("hash", "")).removeprefix("sha256=")
    url = str(info.get("url", ""))
    if not digest or not url.split("#", 1)[0].endswith(".whl"):
        raise BundleError(f"no sha256 for a wheel of {url or item}")
    return str(digest)


def arm64_hashes(pins: dict[str, str]) -> dict[str, list[str]]:
    """name -> sorted sha256 of the arm64 wheels of the pinned version (every pin has at least one)."""
    found: dict[str, set[str]] = {name: set() for name in pins}
    by_key = {re.sub(r"[-_.]+", "-", name).lower(): name for name in pins}
    with tempfile.TemporaryDirectory() as tmp:
        for n, platforms in enumerate(_PLATFORM_ORDERS):
            args = [*pip_platform_args(platforms), *[f"{name}=={version}" for name, version in pins.items()]]
            for item in dry_run_report(args, Path(tmp), f"set{n}"):
                metadata = item["metadata"]
                assert isinstance(metadata, dict)
                key = re.sub(r"[-_.]+", "-", str(metadata["name"])).lower()
                found[by_key[key]].add(_sha256(item))
    missing = sorted(name for name, hashes in found.items() if not hashes)
    if missing:
        raise BundleError(f"no arm64 wheel for {', '.join(missing)}")
    return {name: sorted(hashes) for name, hashes in found.items()}


def render(lock_text: str, hashes: dict[str, list[str]]) -> str:
    """The x86_64 lock's text with each pin's hash lines replaced by its arm64 hashes (comments kept)."""
    out = [_HEADER.rstrip("\n")]
    for line in lock_text.splitlines():
        match = _PIN.match(line)
        if match:
            lines = [f"{match.group(1)}=={match.group(2)}", *(f"    --hash=sha256:{h}" for h in hashes[match.group(1)])]
            out.append(" \\\n".join(lines))
        elif not line.lstrip().startswith("--hash="):
            out.append(line)
    return "\n".join(out) + "\n"


def write_arm64_lock(lock: Path, out: Path) -> dict[str, list[str]]:
    hashes = arm64_hashes(read_pins(lock))
    out.write_text(render(lock.read_text(), hashes))
    return hashes


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m lambdaforge.bundle.lock_arm64 X86_64_LOCK ARM64_LOCK", file=sys.stderr)
        return 2
    hashes = write_arm64_lock(Path(args[0]), Path(args[1]))
    print(f"{args[1]}: {len(hashes)} pins, {sum(map(len, hashes.values()))} arm64 wheels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
