"""S3 transfers: one rule for keys that would leave the destination folder, for every download."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from lambdaforge.errors import NoObjectsError, S3TransferError, UnsafeKeyError
from lambdaforge.s3transfer import download_prefix, upload_folder


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="bkt")
        yield client


def test_a_folder_round_trips_and_a_single_object_keeps_its_name(s3: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "sub" / "b.txt").write_text("b")
    (src / ".hidden").write_text("h")
    assert upload_folder(s3, src, "bkt", "models/v1", hidden=False) == ["models/v1/a.txt", "models/v1/sub/b.txt"]
    s3.put_object(Bucket="bkt", Key="models/v1/folder/", Body=b"")  # a console-made folder marker
    got = download_prefix(s3, "s3://bkt/models/v1/", tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in got) == ["a.txt", "sub/b.txt"]
    assert (tmp_path / "out" / "sub" / "b.txt").read_text() == "b"
    assert [p.name for p in download_prefix(s3, "s3://bkt/models/v1/a.txt", tmp_path / "one")] == ["a.txt"]


@pytest.mark.parametrize("key", ["models/v1/../../escape.txt", "models/v1//abs.txt", "models/v1/sub\\evil.txt"])
def test_a_key_that_would_escape_the_destination_raises_before_any_download(s3: Any, tmp_path: Path,
                                                                             key: str) -> None:
    s3.put_object(Bucket="bkt", Key="models/v1/fine.txt", Body=b"ok")
    s3.put_object(Bucket="bkt", Key=key, Body=b"x")
    with pytest.raises(UnsafeKeyError, match="escapes the destination folder"):
        download_prefix(s3, "s3://bkt/models/v1/", tmp_path / "out")
    assert not (tmp_path / "out" / "fine.txt").exists()


def test_an_empty_or_oversized_prefix_is_refused(s3: Any, tmp_path: Path) -> None:
    with pytest.raises(NoObjectsError, match="no objects under this prefix"):
        download_prefix(s3, "s3://bkt/nothing/", tmp_path / "out")
    s3.put_object(Bucket="bkt", Key="big/x", Body=b"x" * 100)
    with pytest.raises(S3TransferError, match="larger than 10 bytes"):
        download_prefix(s3, "s3://bkt/big/", tmp_path / "out", max_bytes=10)
