"""Safe extraction: `..`, absolute paths, links and devices are refused before anything is written."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from lambdaforge.artifact import UnsafeArchiveError, check_archive, pack_dir, safe_extract


def tar_with(tmp_path: Path, *members: tarfile.TarInfo, payload: bytes = b"x") -> Path:
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for info in members:
            if info.isfile():
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                tar.addfile(info)
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


@pytest.mark.parametrize(
    ("info", "message"),
    [
        (member("../escape.txt"), "climbs out"),
        (member("model/../../escape.txt"), "climbs out"),
        (member("/etc/passwd"), "absolute path"),
        (member("link", tarfile.SYMTYPE, "/etc/passwd"), "is a link"),
        (member("inner-link", tarfile.SYMTYPE, "model.onnx"), "is a link"),
        (member("hard", tarfile.LNKTYPE, "model.onnx"), "is a link"),
        (member("dev", tarfile.CHRTYPE), "not a regular file"),
        (member("fifo", tarfile.FIFOTYPE), "not a regular file"),
    ],
)
def test_unsafe_members_are_rejected_and_nothing_is_written(tmp_path: Path, info: tarfile.TarInfo,
                                                            message: str) -> None:
    archive = tar_with(tmp_path, member("model.onnx"), info)
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match=message):
        safe_extract(archive, dest)
    assert not dest.exists()
    assert not (tmp_path / "escape.txt").exists()


def test_size_and_member_limits(tmp_path: Path) -> None:
    archive = tar_with(tmp_path, member("a"), member("b"), payload=b"x" * 1000)
    with pytest.raises(UnsafeArchiveError, match="more than 1500 bytes"):
        check_archive(archive, max_bytes=1500)
    with pytest.raises(UnsafeArchiveError, match="more than 1 members"):
        check_archive(archive, max_members=1)


def test_garbage_is_not_a_tarball(tmp_path: Path) -> None:
    bad = tmp_path / "model.tar.gz"
    bad.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(UnsafeArchiveError, match="not a readable tar archive"):
        safe_extract(bad, tmp_path / "out")


def test_pack_then_extract_roundtrip_is_deterministic(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "model.onnx").write_bytes(b"abc")
    (src / "sub" / "tok.json").write_text("{}")
    a = pack_dir(src, tmp_path / "a.tar.gz").read_bytes()
    b = pack_dir(src, tmp_path / "b.tar.gz").read_bytes()
    assert a == b
    out = safe_extract(tmp_path / "a.tar.gz", tmp_path / "out")
    assert (out / "model.onnx").read_bytes() == b"abc"
    assert (out / "sub" / "tok.json").read_text() == "{}"
