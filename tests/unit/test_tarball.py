"""Safe extraction: `..`, absolute paths, links and devices are refused before anything is written;
header bombs are refused with memory bounded."""

from __future__ import annotations

import io
import struct
import tarfile
import tracemalloc
import zlib
from pathlib import Path

import pytest

from lambdaforge.artifact import UnsafeArchiveError, check_archive, pack_dir, safe_extract
from lambdaforge.artifact.tarball import MAX_HEADER_BYTES, MAX_TOTAL_HEADER_BYTES

MEMORY_BUDGET = 64 << 20  # what a check may allocate, whatever the archive declares


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


def _gzip_of(pieces: list[tuple[bytes, int]]) -> bytes:
    """A gzip stream of each piece repeated its count of times, built without holding the expansion:
    after a full flush deflate forgets its history, so a repeated piece compresses to the same bytes."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    out, crc, total = [], 0, 0
    for data, times in pieces:
        if times == 0:
            continue
        first = c.compress(data) + c.flush(zlib.Z_FULL_FLUSH)
        if times > 1:
            again = c.compress(data) + c.flush(zlib.Z_FULL_FLUSH)
            assert again == first
            out += [first, again * (times - 1)]
        else:
            out.append(first)
        for _ in range(times):
            crc = zlib.crc32(data, crc)
        total += len(data) * times
    out.append(c.flush())
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + b"".join(out) + struct.pack("<II", crc, total & 0xFFFFFFFF)


def _pax_header(size: int) -> list[tuple[bytes, int]]:
    """A pax extended header of `size` bytes: one `comment` record of 'a's (valid pax, so tarfile parses it)."""
    info = tarfile.TarInfo("././@PaxHeader")
    info.type, info.size = tarfile.XHDTYPE, size
    prefix = f"{size} comment=".encode()
    chunk = b"a" * (1 << 20)
    reps, rest = divmod(size - len(prefix) - 1, len(chunk))
    return [(info.tobuf(format=tarfile.USTAR_FORMAT) + prefix, 1), (chunk, reps),
            (b"a" * rest + b"\n" + b"\0" * (-size % 512), 1)]


def _file(name: str, data: bytes) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info.tobuf(format=tarfile.USTAR_FORMAT) + data + b"\0" * (-len(data) % 512)


def _peak_while(fn: object) -> int:
    tracemalloc.start()
    try:
        assert callable(fn)
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_a_pax_header_bomb_is_refused_with_memory_bounded(tmp_path: Path) -> None:
    # 300 KB on disk, a 300 MB pax header once decompressed: tarfile alone reads it whole (~940 MB peak)
    bomb = tmp_path / "model.tar.gz"
    bomb.write_bytes(_gzip_of([*_pax_header(300 << 20), (_file("model.onnx", b"x") + b"\0" * 1024, 1)]))
    assert bomb.stat().st_size < 400_000

    def refuse() -> None:
        with pytest.raises(UnsafeArchiveError, match=rf"{bomb}: a tar header .* of 314572800 bytes is over the limit"):
            safe_extract(bomb, tmp_path / "out")

    assert _peak_while(refuse) < MEMORY_BUDGET
    assert not (tmp_path / "out").exists() and [p.name for p in tmp_path.iterdir()] == ["model.tar.gz"]


def test_many_headers_under_the_per_header_limit_are_refused_together(tmp_path: Path) -> None:
    each = MAX_HEADER_BYTES - 4096
    one = [*_pax_header(each), (_file("f", b"x"), 1)]
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(_gzip_of(one * (MAX_TOTAL_HEADER_BYTES // each + 1) + [(b"\0" * 1024, 1)]))

    def refuse() -> None:
        with pytest.raises(UnsafeArchiveError, match=f"hold more than {MAX_TOTAL_HEADER_BYTES} bytes"):
            check_archive(archive)

    assert _peak_while(refuse) < MEMORY_BUDGET


def test_the_byte_budget_counts_headers_not_only_member_sizes(tmp_path: Path) -> None:
    # 400 empty files, each with a 4 KB GNU long name: member sizes add up to 0, the archive to ~2 MB
    members = []
    for i in range(400):
        name = f"{i:04d}-" + "n" * 4000
        long = tarfile.TarInfo("././@LongLink")
        long.type, long.size = tarfile.GNUTYPE_LONGNAME, len(name) + 1
        members.append((long.tobuf(format=tarfile.USTAR_FORMAT) + name.encode() + b"\0" * (-len(name) % 512), 1))
        members.append((_file(f"short{i}", b""), 1))
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(_gzip_of([*members, (b"\0" * 1024, 1)]))
    assert len(check_archive(archive, max_bytes=4 << 20)) == 400  # the long names are read as names
    with pytest.raises(UnsafeArchiveError, match=r"unpacks to more than 1000000 bytes \(headers and padding"):
        check_archive(archive, max_bytes=1_000_000)


def test_extracting_into_an_existing_folder_keeps_what_is_there(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "model.onnx").write_bytes(b"abc")
    pack_dir(src, tmp_path / "m.tar.gz")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "kept.txt").write_text("kept")
    safe_extract(tmp_path / "m.tar.gz", dest)
    assert sorted(p.name for p in dest.iterdir()) == ["kept.txt", "model.onnx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "m.tar.gz", "src"]  # no staging folder left


@pytest.mark.parametrize("compression", ["", "gz", "bz2", "xz"])
def test_every_compression_tarfile_writes_is_read_through_the_bounded_reader(tmp_path: Path,
                                                                           compression: str) -> None:
    archive = tmp_path / "m.tar"
    with tarfile.open(archive, f"w:{compression}", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("sub/" + "long" * 40 + ".onnx")  # a pax header for the long name
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    out = safe_extract(archive, tmp_path / "out")
    assert (out / "sub" / ("long" * 40 + ".onnx")).read_bytes() == b"abc"
