"""Building images: the slim list, the lock filter, the pip install for Lambda, build contexts, image ENV."""

from __future__ import annotations

import hashlib
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from lambdaforge.bundle.errors import BundleError

LAMBDA_PYTHON = "3.12"
LAMBDA_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


@dataclass(frozen=True)
class SlimSpec:
    excluded: dict[str, str] = field(default_factory=dict)
    prune: tuple[tuple[str, str], ...] = ()
    keep_only: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (folder, sub-folders kept); other sub-folders go
    strip: tuple[tuple[str, str], ...] = ()  # shared libraries whose debug and local symbols go

    @classmethod
    def read(cls, path: Path) -> SlimSpec:
        excluded: dict[str, str] = {}
        prune: list[tuple[str, str]] = []
        keep_only: list[tuple[str, tuple[str, ...]]] = []
        strip: list[tuple[str, str]] = []
        for n, raw in enumerate(Path(path).read_text().splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, 2)
            if len(parts) < 3 or parts[0] not in ("exclude", "prune", "keep-only", "strip"):
                raise BundleError(f"{path}:{n}: expected 'exclude NAME reason', 'prune GLOB reason', "
                                  "'strip GLOB reason' or 'keep-only FOLDER name,name,... reason'")
            if parts[0] == "keep-only":
                keep_only.append((parts[1], tuple(parts[2].split(None, 1)[0].split(","))))
            elif parts[0] == "exclude":
                excluded[_normalise(parts[1])] = parts[2]
            else:
                if parts[1].startswith("/") or ".." in parts[1].split("/"):
                    raise BundleError(f"{path}:{n}: {parts[0]} pattern must stay inside the install target")
                (prune if parts[0] == "prune" else strip).append((parts[1], parts[2]))
        return cls(excluded=excluded, prune=tuple(prune), keep_only=tuple(keep_only), strip=tuple(strip))


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


_LOCK_HEADER = "# Filtered by `python -m lambdaforge.bundle lock`: excluded per slim.txt: "


def filter_lock(requirements: Path, spec: SlimSpec) -> list[str]:
    """Drop excluded distributions (and their hash lines) from a pip-compile output, in place."""
    out: list[str] = []
    dropped: list[str] = []
    skipping = False
    for line in requirements.read_text().splitlines():
        if line.startswith(_LOCK_HEADER):  # filtered before: keep one header naming everything dropped
            dropped.extend(name.strip() for name in line[len(_LOCK_HEADER):].split(",") if name.strip())
            continue
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", line)
        if match:
            skipping = _normalise(match.group(1)) in spec.excluded
            if skipping:
                dropped.append(match.group(1))
                continue
        elif skipping and (line.startswith((" ", "\t")) or not line.strip()):
            continue
        else:
            skipping = False
        out.append(line)
    dropped = sorted(set(dropped))
    requirements.write_text("\n".join([_LOCK_HEADER + ", ".join(dropped), *out]) + "\n")
    return dropped


def slim(target: Path, spec: SlimSpec) -> int:
    """Delete the prune patterns from an install target and strip its shared libraries; returns the bytes saved."""
    removed = 0
    doomed: list[Path] = []
    for pattern, _reason in spec.prune:
        doomed.extend(sorted(Path(target).glob(pattern)))
    for folder, kept in spec.keep_only:
        base = Path(target) / folder
        if base.is_dir():
            doomed.extend(p for p in sorted(base.iterdir()) if p.is_dir() and p.name not in kept)
    for path in doomed:
        if path.is_symlink() or path.is_file():
            removed += path.stat().st_size
            path.unlink()
        elif path.is_dir():
            removed += dir_size(path)
            shutil.rmtree(path)
    return removed + strip_libraries(target, spec)


def strip_libraries(target: Path, spec: SlimSpec) -> int:
    """`strip --strip-unneeded` the matching ELF files: the dynamic symbols that loading needs stay.

    Wheels often ship unstripped native code (tokenizers' Rust library carries 3 MB of symbols).
    """
    files = sorted({p for pattern, _reason in spec.strip for p in Path(target).glob(pattern)
                    if p.is_file() and not p.is_symlink() and _is_elf(p)})
    if not files:
        return 0
    tool = shutil.which("strip")
    if tool is None:
        raise BundleError(f"{target}: the slim list strips shared libraries, but `strip` is not on PATH "
                          "(install binutils)")
    saved = 0
    for path in files:
        before = path.stat().st_size
        proc = subprocess.run([tool, "--strip-unneeded", str(path)], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise BundleError(f"{path}: strip failed: {proc.stderr.strip()}")
        saved += before - path.stat().st_size
    return saved


def _is_elf(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == b"\x7fELF"


def dir_size(path: Path, *, without_caches: bool = False) -> int:
    """Bytes of the regular files under path; `without_caches` leaves __pycache__ out, as .dockerignore does."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*")
               if p.is_file() and not p.is_symlink() and not (without_caches and "__pycache__" in p.parts))


def install_deps(requirements: Path, spec: SlimSpec, cache_root: Path, python: str | None = None) -> Path:
    """What the image's `pip install` puts in LAMBDA_TASK_ROOT, for Lambda's Python and platform, slimmed.

    `python` compiles the bytecode (the image's pip does it with Python 3.12; this one by default).
    Cached by the hash of the requirements, slim list and compiler, so a second run is instant.
    """
    python = python or sys.executable
    digest = hashlib.sha256(requirements.read_bytes() + repr(spec).encode() + python.encode()).hexdigest()[:16]
    target = cache_root / f"deps-{digest}"
    if (target / ".complete").is_file():
        return target
    shutil.rmtree(target, ignore_errors=True)
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
           "--require-hashes", "--only-binary=:all:", "--no-compile", "--ignore-requires-python",
           "--python-version", LAMBDA_PYTHON,
           "--implementation", "cp", *[f"--platform={p}" for p in LAMBDA_PLATFORMS], "--target", str(target),
           "-r", str(requirements)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")] or \
            proc.stderr.strip().splitlines()[-3:]
        raise BundleError(f"pip could not install {requirements} for Python {LAMBDA_PYTHON}: {' '.join(errors)}")
    slim(target, spec)
    # the image's pip compiles bytecode (Lambda cannot write it at run time); count it too
    subprocess.run([python, "-m", "compileall", "-q", str(target)], capture_output=True, check=False)
    (target / ".complete").write_text("ok")
    return target


def image_env(root: Path, function: str) -> dict[str, str]:
    """The ENV of the function's final image stage, so local runs of the handler see what Lambda sees."""
    dockerfile = root / "packaging" / function / "Dockerfile"
    try:
        text = dockerfile.read_text()
    except OSError as exc:
        raise BundleError(f"{dockerfile}: cannot read the Dockerfile: {exc.strerror}") from exc
    env: dict[str, str] = {}
    for instruction in re.sub(r"\\\n", " ", text).splitlines():
        words = shlex.split(instruction, comments=True)
        if not words:
            continue
        if words[0].upper() == "FROM":
            env = {}  # a new stage starts with none of the previous stage's ENV
        elif words[0].upper() == "ENV" and len(words) > 1:
            if "=" not in words[1]:  # the legacy form, ENV KEY value
                env[words[1]] = " ".join(words[2:])
                continue
            for word in words[1:]:
                key, _, value = word.partition("=")
                env[key] = value
    return env


def assemble_context(root: Path, function: str, model_dir: Path | None, out: Path) -> Path:
    """A self-contained Docker build context: Dockerfile, requirements, lambdaforge, handler, model."""
    packaging_dir = root / "packaging" / function
    if not (packaging_dir / "Dockerfile").is_file():
        raise BundleError(f"{packaging_dir}: no Dockerfile for function {function!r}")
    if out.exists() and any(out.iterdir()):
        raise BundleError(f"{out}: output directory is not empty")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(packaging_dir, out / "packaging" / function, ignore=ignore)
    shutil.copytree(root / "src" / "lambdaforge", out / "src" / "lambdaforge", ignore=ignore)
    (out / "functions" / function).mkdir(parents=True)
    shutil.copyfile(root / "functions" / function / "app.py", out / "functions" / function / "app.py")
    shutil.copyfile(packaging_dir / "Dockerfile", out / "Dockerfile")
    if model_dir is not None:
        from lambdaforge.artifact import open_model_dir

        md = open_model_dir(model_dir)  # only a verified model is baked in
        shutil.copytree(md.path, out / "model")
    return out
