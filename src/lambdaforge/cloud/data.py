"""A dataset into a stack's data bucket, laid out the way the trigger starts runs from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lambdaforge.cloud.errors import CloudError
from lambdaforge.s3transfer import upload_file, upload_folder


def upload_path(s3: Any, bucket: str, recipe: str, path: Path, name: str | None = None) -> str:
    """A file goes to data/<recipe>/<name>; a folder's files go under data/<recipe>/<name>/, then _READY.

    Returns the key that starts the run (the file, or the folder's _READY marker).
    """
    path = Path(path)
    if path.is_file():
        key = f"data/{recipe}/{name or path.name}"
        upload_file(s3, path, bucket, key)
        return key
    if not path.is_dir():
        raise CloudError(f"{path}: no such file or folder")
    prefix = f"data/{recipe}/{name or path.name}/"
    if not upload_folder(s3, path, bucket, prefix, hidden=False):
        raise CloudError(f"{path}: the folder has no files")
    s3.put_object(Bucket=bucket, Key=prefix + "_READY", Body=b"")
    return prefix + "_READY"
