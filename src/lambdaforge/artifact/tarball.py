"""Safe tar handling for model artifacts (model.tar.gz from SageMaker is untrusted bytes).

Every member is checked before anything is written: no absolute paths, no `..`, no links,
no devices, and limits on member count and total size.

Memory stays bounded whatever the archive holds: it is read once, forward, through a reader that
counts every decompressed byte (headers, padding and pax records included, not only member sizes)
and refuses any one read larger than a header may be. `tarfile` reads a whole pax extended header or
GNU long name into memory before parsing it, so each such header's declared size is checked first:
a 300 KB gzip whose pax header decompresses to 300 MB is refused after reading one 512-byte block.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import os
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO, cast

from lambdaforge.artifact.errors import UnsafeArchiveError

DEFAULT_MAX_BYTES = 2 << 30
DEFAULT_MAX_MEMBERS = 10_000
# One pax extended header or GNU long name/link: real ones hold a path and a few numbers.
MAX_HEADER_BYTES = 1 << 20
# All of them together: tarfile keeps every member's pax records for as long as the archive is open.
MAX_TOTAL_HEADER_BYTES = 16 << 20
# tarfile copies member data in 16 KiB reads; only header payloads are read in one piece.
_MAX_READ = MAX_HEADER_BYTES
_HEADER_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME,
                 tarfile.GNUTYPE_LONGLINK)


class _BoundedReader:
    """The decompressed archive, read forward once: every byte counted against the budget.

    `peek_block` lets a header block be looked at before tarfile parses it (it reads the same block
    again from here), so tarfile itself is used through its public interface only."""

    def __init__(self, inner: io.BufferedIOBase, archive: str, max_bytes: int) -> None:
        self._inner = inner
        self.archive = archive
        self.max_bytes = max_bytes
        self._pos = 0  # of the inner stream
        self._pending = b""  # a block read ahead by peek_block, served again by read
        self.header_bytes = 0

    def _over(self) -> UnsafeArchiveError:
        return UnsafeArchiveError(f"{self.archive}: unpacks to more than {self.max_bytes} bytes "
                                  "(headers and padding included)")

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > _MAX_READ:
            raise UnsafeArchiveError(f"{self.archive}: a single read of {size} bytes; archives whose headers "
                                     f"are larger than {_MAX_READ} bytes are refused")
        out, self._pending = self._pending[:size], self._pending[size:]
        if len(out) < size:
            more = self._inner.read(size - len(out))
            self._pos += len(more)
            out += more
            if self._pos > self.max_bytes:
                raise self._over()
        return out

    def tell(self) -> int:
        return self._pos - len(self._pending)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = offset + (self.tell() if whence == io.SEEK_CUR else 0)
        if whence not in (io.SEEK_SET, io.SEEK_CUR) or target < 0:
            raise io.UnsupportedOperation("only absolute and relative seeks")
        if target > self.max_bytes:
            raise self._over()
        if target != self.tell():
            self._pending = b""
            self._pos = self._inner.seek(target)
        return target

    def peek_block(self, tar: tarfile.TarFile) -> None:
        """Refuse a header block that announces a header larger than the limits, before tarfile reads it."""
        block = self.read(tarfile.BLOCKSIZE)
        self._pending = block + self._pending
        try:
            info = tarfile.TarInfo.frombuf(block, tar.encoding or "utf-8", tar.errors or "surrogateescape")
        except tarfile.HeaderError:
            return  # end of archive, or garbage: tarfile says which
        if info.type == tarfile.GNUTYPE_SPARSE:
            raise UnsafeArchiveError(f"{self.archive}: member {info.name!r} is a sparse file; sparse files are "
                                     "refused")
        if info.type not in _HEADER_TYPES:
            return
        self.header_bytes += info.size
        if info.size > MAX_HEADER_BYTES:
            raise UnsafeArchiveError(f"{self.archive}: a tar header (type {info.type.decode(errors='replace')!r}, "
                                     f"pax extended header or GNU long name) of {info.size} bytes is over the "
                                     f"limit of {MAX_HEADER_BYTES}")
        if self.header_bytes > MAX_TOTAL_HEADER_BYTES:
            raise UnsafeArchiveError(f"{self.archive}: its pax extended headers and GNU long names hold more "
                                     f"than {MAX_TOTAL_HEADER_BYTES} bytes")


class _GuardedTarInfo(tarfile.TarInfo):
    """Each header block is checked by the bounded reader before tarfile reads what it announces."""

    @classmethod
    def fromtarfile(cls, tarfile: tarfile.TarFile) -> _GuardedTarInfo:
        reader = tarfile.fileobj
        if isinstance(reader, _BoundedReader):
            reader.peek_block(tarfile)
        return super().fromtarfile(tarfile)


_MAGIC: tuple[tuple[bytes, Callable[[io.BufferedReader], io.BufferedIOBase]], ...] = (
    (b"\x1f\x8b", lambda f: gzip.GzipFile(fileobj=f, mode="rb")),
    (b"BZh", lambda f: bz2.BZ2File(f, "rb")),
    (b"\xfd7zXZ\x00", lambda f: lzma.LZMAFile(f, "rb")),  # noqa: SIM115 - closed by _open_bounded
)


@contextlib.contextmanager
def _open_bounded(tar_path: Path, max_bytes: int) -> Iterator[tarfile.TarFile]:
    """The archive (gzip, bzip2, xz or plain) as a TarFile that reads through a _BoundedReader."""
    archive = str(tar_path)
    with Path(tar_path).open("rb") as raw:
        magic = raw.read(6)
        raw.seek(0)
        opener = next((op for prefix, op in _MAGIC if magic.startswith(prefix)), None)
        inner: io.BufferedIOBase = opener(raw) if opener else raw
        with inner:
            reader = _BoundedReader(inner, archive, max_bytes)
            with tarfile.open(fileobj=cast(IO[bytes], reader), mode="r:", tarinfo=_GuardedTarInfo) as tar:
                yield tar


def _check_member(member: tarfile.TarInfo, archive: str) -> None:
    name = member.name
    pure = PurePosixPath(name)
    if name.startswith(("/", "\\")) or pure.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path")
    if ".." in pure.parts or "\\" in name:
        raise UnsafeArchiveError(f"{archive}: member {name!r} climbs out of the target with '..'")
    if member.issym() or member.islnk():
        raise UnsafeArchiveError(f"{archive}: member {name!r} is a link (to {member.linkname!r}); links are refused")
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(f"{archive}: member {name!r} is not a regular file or directory")
    if member.sparse is not None:
        raise UnsafeArchiveError(f"{archive}: member {name!r} is a sparse file; sparse files are refused")


def _checked(tar: tarfile.TarFile, archive: str, max_bytes: int, max_members: int) -> Iterator[tarfile.TarInfo]:
    """The members in archive order, each checked (and counted) before the caller sees it."""
    total = 0
    for count, member in enumerate(tar, start=1):
        _check_member(member, archive)
        total += member.size
        if count > max_members:
            raise UnsafeArchiveError(f"{archive}: more than {max_members} members")
        if total > max_bytes:
            raise UnsafeArchiveError(f"{archive}: unpacks to more than {max_bytes} bytes")
        yield member


_READ_ERRORS = (tarfile.TarError, EOFError, OSError, ValueError, zlib.error)


def check_archive(tar_path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
                  max_members: int = DEFAULT_MAX_MEMBERS) -> list[tarfile.TarInfo]:
    """Return the members if every one is safe; raise naming the first that is not.

    The sum of their sizes is what the archive declares it unpacks to: callers check room for it."""
    archive = str(tar_path)
    try:
        with _open_bounded(tar_path, max_bytes) as tar:
            return list(_checked(tar, archive, max_bytes, max_members))
    except _READ_ERRORS as exc:
        raise UnsafeArchiveError(f"{archive}: not a readable tar archive ({exc})") from exc


def safe_extract(tar_path: Path, dest: Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_members: int = DEFAULT_MAX_MEMBERS) -> Path:
    """Check and extract in one forward pass, into a sibling folder that becomes `dest` only when every
    member passed (nothing lands in `dest` otherwise); the `data` filter is a second line of defence."""
    archive = str(tar_path)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        try:
            with _open_bounded(tar_path, max_bytes) as tar:
                for member in _checked(tar, archive, max_bytes, max_members):
                    tar.extract(member, staging, filter="data")
        except _READ_ERRORS as exc:
            raise UnsafeArchiveError(f"{archive}: not a readable tar archive, or extraction failed ({exc})") from exc
        os.chmod(staging, 0o755)  # noqa: S103 - mkdtemp's 0o700; a folder we extract into is read by others
        if dest.is_dir() and not any(dest.iterdir()):
            dest.rmdir()
        if dest.exists():
            shutil.copytree(staging, dest, dirs_exist_ok=True)
        else:
            os.replace(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def _reset(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    return info


def pack_dir(src: Path, tar_path: Path) -> Path:
    """A deterministic tar.gz of a directory (same bytes for the same content)."""
    src = Path(src)
    buf = io.BytesIO()
    import gzip

    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(src.rglob("*")):
            if path.is_symlink():
                raise UnsafeArchiveError(f"{path}: refusing to pack a symbolic link")
            rel = path.relative_to(src).as_posix()
            tar.add(path, arcname=rel, recursive=False, filter=_reset)
    tar_path = Path(tar_path)
    tar_path.parent.mkdir(parents=True, exist_ok=True)
    with tar_path.open("wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(buf.getvalue())
    return tar_path
