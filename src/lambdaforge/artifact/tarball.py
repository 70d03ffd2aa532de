"""Safe tar handling for model artifacts (model.tar.gz from SageMaker is untrusted bytes).

Every member is checked before anything is written: no absolute paths, no `..`, no links,
no devices, and limits on member count and total size.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path, PurePosixPath

from lambdaforge.artifact.errors import UnsafeArchiveError

DEFAULT_MAX_BYTES = 2 << 30
DEFAULT_MAX_MEMBERS = 10_000


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


def check_archive(tar_path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
                  max_members: int = DEFAULT_MAX_MEMBERS) -> list[tarfile.TarInfo]:
    """Return the members if every one is safe; raise naming the first that is not."""
    archive = str(tar_path)
    try:
        with tarfile.open(tar_path, "r:*") as tar:
            members = []
            total = 0
            for member in tar:
                _check_member(member, archive)
                members.append(member)
                total += member.size
                if len(members) > max_members:
                    raise UnsafeArchiveError(f"{archive}: more than {max_members} members")
                if total > max_bytes:
                    raise UnsafeArchiveError(f"{archive}: unpacks to more than {max_bytes} bytes")
            return members
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise UnsafeArchiveError(f"{archive}: not a readable tar archive ({exc})") from exc


def safe_extract(tar_path: Path, dest: Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_members: int = DEFAULT_MAX_MEMBERS) -> Path:
    """Extract after checking every member; the `data` filter is a second line of defence."""
    check_archive(tar_path, max_bytes=max_bytes, max_members=max_members)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(tar_path, "r:*") as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise UnsafeArchiveError(f"{tar_path}: extraction failed ({exc})") from exc
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
