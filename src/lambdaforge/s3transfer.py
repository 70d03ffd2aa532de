"""Moving files between S3 and local folders, with one safety rule for object keys.

An object key becomes a local path only if it stays inside the destination: a key with a `..`
part, an absolute key or a backslash raises `UnsafeKeyError` before anything is downloaded (a
key is data someone else wrote). boto3 and the standard library only: the inference runtime
uses this module and has no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lambdaforge.aws import object_exists, split_s3_uri
from lambdaforge.errors import NoObjectsError, ObjectExistsError, S3TransferError, UnsafeKeyError


def list_objects(s3: Any, bucket: str, prefix: str) -> list[tuple[str, int]]:
    """(key, size) of every object under a prefix, across pages."""
    found: list[tuple[str, int]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found.extend((obj["Key"], int(obj["Size"])) for obj in page.get("Contents", []))
    return found


def relative_key(uri: str, prefix: str, key: str) -> str | None:
    """Where `key` goes below the destination; None for a folder marker. Raises for a key that escapes."""
    rel = key[len(prefix):]
    if prefix and not prefix.endswith("/") and rel.startswith("/"):
        rel = rel[1:]  # s3://bucket/folder names the folder's objects too
    if not rel:
        rel = key.rsplit("/", 1)[-1]  # the URI names one object: it keeps its file name
    if not rel or rel.endswith("/"):
        return None
    if rel.startswith("/") or "\\" in rel or ".." in rel.split("/"):
        raise UnsafeKeyError(f"{uri}: object key {key!r} escapes the destination folder")
    return rel


def download_prefix(s3: Any, uri: str, dest: Path, *, max_bytes: int | None = None) -> list[Path]:
    """Every object under an s3:// prefix (or the one object it names) into dest, keeping the key layout.

    All keys are checked, and the total size against `max_bytes`, before the first download.
    """
    bucket, prefix = split_s3_uri(uri)
    objects = list_objects(s3, bucket, prefix)
    if not objects:
        raise NoObjectsError(f"{uri}: no objects under this prefix")
    if max_bytes is not None and sum(size for _, size in objects) > max_bytes:
        raise S3TransferError(f"{uri}: the objects are larger than {max_bytes} bytes")
    dest.mkdir(parents=True, exist_ok=True)
    planned = [(key, dest / rel) for key, _ in objects if (rel := relative_key(uri, prefix, key)) is not None]
    for key, target in planned:
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(target))
    return [target for _, target in planned]


def download_file(s3: Any, uri: str, dest: Path) -> Path:
    """The one object an s3:// URI names, to the file `dest`."""
    bucket, key = split_s3_uri(uri)
    dest.parent.mkdir(parents=True, exist_ok=True)
    s3.download_file(bucket, key, str(dest))
    return dest


def upload_file(s3: Any, path: Path, bucket: str, key: str) -> str:
    """One file to s3://bucket/key; returns that URI."""
    s3.upload_file(str(path), bucket, key)
    return f"s3://{bucket}/{key}"


def upload_folder(s3: Any, folder: Path, bucket: str, prefix: str, *, hidden: bool = True,
                  new_keys_only: bool = False) -> list[str]:
    """Every file under `folder` to `prefix`/<its path below folder>; `hidden=False` leaves dot-files out.

    `new_keys_only`: refuse (ObjectExistsError) to replace an object that is already there.
    """
    base = prefix if not prefix or prefix.endswith("/") else prefix + "/"
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and (hidden or not p.name.startswith(".")))
    keys = [base + path.relative_to(folder).as_posix() for path in files]
    for path, key in zip(files, keys, strict=True):
        if new_keys_only and object_exists(s3, bucket, key):
            raise ObjectExistsError(f"s3://{bucket}/{key} already exists; versions are never overwritten")
        s3.upload_file(str(path), bucket, key)
    return keys
