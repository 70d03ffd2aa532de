"""The SageMaker side of a training run: hyperparameters in SageMaker's encoding, metric
definitions, and the script-mode source bundle (uploaded once per content hash).

The retraining workflow and `lambdaforge train --cloud` both use this, so a job started either
way runs the same entry point with the same hyperparameters and metric regexes.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from functools import cache
from pathlib import Path
from typing import Any

import lambdaforge
from lambdaforge.training.metrics import METRIC_DEFINITIONS

ENTRY_POINT = "train.py"
_ENTRY_SOURCE = '''"""SageMaker script-mode entry point: the lambdaforge training harness."""
import sys

from lambdaforge.training.harness import main

sys.exit(main(from_bundle=True))
'''


def sagemaker_hyperparameters(recipe: str, hyperparameters: dict[str, Any], *, dataset_version: str = "",
                              source_uri: str | None = None, region: str | None = None) -> dict[str, str]:
    """Every value a JSON-encoded string, as the SageMaker SDKs send them; the harness decodes them."""
    hps: dict[str, Any] = {**hyperparameters, "recipe": recipe}
    if dataset_version:
        hps["dataset_version"] = dataset_version
    if source_uri:
        hps["sagemaker_program"] = ENTRY_POINT
        hps["sagemaker_submit_directory"] = source_uri
    if region:
        hps["sagemaker_region"] = region
    return {str(k): json.dumps(v) for k, v in sorted(hps.items())}


def metric_definitions() -> list[dict[str, str]]:
    return [dict(d) for d in METRIC_DEFINITIONS]


@cache
def source_bundle() -> tuple[bytes, str]:
    """sourcedir.tar.gz: the lambdaforge package, train.py and requirements.txt; deterministic bytes.

    Built once per process: a warm trigger starts many runs from the same installed code."""
    import gzip

    package = Path(lambdaforge.__file__).resolve().parent
    buf = io.BytesIO()

    def add(name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), 0, 0o644
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        add(ENTRY_POINT, _ENTRY_SOURCE.encode())
        add("requirements.txt", (package / "training" / "requirements.txt").read_bytes())
        for path in sorted(package.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
                add(f"lambdaforge/{path.relative_to(package).as_posix()}", path.read_bytes())
    out = io.BytesIO()
    with gzip.GzipFile(filename="", fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(buf.getvalue())
    data = out.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def upload_source_bundle(s3: Any, bucket: str) -> str:
    """Upload the bundle unless this exact content is already there; returns its s3:// URI."""
    from lambdaforge.aws import object_exists

    data, digest = source_bundle()
    key = f"source/{digest[:24]}/sourcedir.tar.gz"
    if not object_exists(s3, bucket, key):
        s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType="application/gzip")
    return f"s3://{bucket}/{key}"
