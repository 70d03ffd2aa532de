"""The training job's lock (requirements.txt beside this module, shipped in the source bundle).

The toolkit pip-installs it before train.py runs, torch included, so the job runs the versions the
tests ran. The harness checks the one that matters most before it trains: an image whose torch the
lock could not replace (a custom `TrainingImageUri`, a pip that skipped it) fails with a reason
instead of training on an untested torch.
"""

from __future__ import annotations

import re
from pathlib import Path

from lambdaforge.training.errors import TrainingError

LOCK = Path(__file__).resolve().parent / "requirements.txt"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)


def pins(text: str | None = None) -> dict[str, str]:
    """Every `name==version` of the lock, names normalised as pip does."""
    raw = LOCK.read_text(encoding="utf-8") if text is None else text
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in _PIN.findall(raw)}


def locked_python(text: str | None = None) -> str:
    raw = LOCK.read_text(encoding="utf-8") if text is None else text
    match = re.search(r"for Python (\d+\.\d+)", raw)
    if not match:
        raise TrainingError(f"{LOCK}: the header does not say which Python the lock was compiled for")
    return match.group(1)


def check_torch(installed: str, text: str | None = None) -> None:
    """Refuse to train on a torch other than the locked one (a local label such as +cpu or +cu130 is the build)."""
    locked = pins(text).get("torch")
    if locked is None:
        raise TrainingError(f"{LOCK}: torch is not pinned; run `make lock`")
    if installed.split("+", 1)[0] != locked:
        raise TrainingError(
            f"the training container has torch {installed}, but this bundle was tested with torch {locked} "
            "(pinned in its requirements.txt, which the container did not install); use the template's "
            "default training image, or an image whose pip may replace torch")
