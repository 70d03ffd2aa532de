"""The slim list: its grammar, stripping shared libraries, and the lock filter."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lambdaforge.bundle import build
from lambdaforge.bundle.build import SlimSpec, filter_lock, image_env, slim
from lambdaforge.bundle.errors import BundleError


def spec_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "slim.txt"
    path.write_text(text)
    return path


def test_the_slim_list_reads_every_directive(tmp_path: Path) -> None:
    spec = SlimSpec.read(spec_file(tmp_path, "# comment\n"
                                   "exclude Hugging_Face.Hub  not used\n"
                                   "prune pkg/tests  test suites\n"
                                   "strip **/*.so  symbols\n"
                                   "keep-only botocore/data s3,sts  service models\n"))
    assert spec.excluded == {"hugging-face-hub": "not used"}
    assert spec.prune == (("pkg/tests", "test suites"),)
    assert spec.strip == (("**/*.so", "symbols"),)
    assert spec.keep_only == (("botocore/data", ("s3", "sts")),)


@pytest.mark.parametrize("line", ["strip /usr/lib/*.so  outside", "prune ../x  outside", "shrink x  unknown",
                                  "strip *.so"])
def test_the_slim_list_rejects_bad_lines_naming_the_line(tmp_path: Path, line: str) -> None:
    path = spec_file(tmp_path, "exclude a  ok\n" + line + "\n")
    with pytest.raises(BundleError, match=r"slim\.txt:2:"):
        SlimSpec.read(path)


@pytest.fixture
def unstripped_extension(tmp_path: Path) -> Path:
    """A copy of a real extension module that its wheel ships with its symbol table."""
    import wrapt._wrappers

    target = tmp_path / "site" / "wrapt" / Path(wrapt._wrappers.__file__).name
    target.parent.mkdir(parents=True)
    shutil.copyfile(wrapt._wrappers.__file__, target)
    return target


def test_strip_shrinks_extensions_that_still_load_and_leaves_other_files(unstripped_extension: Path,
                                                                        tmp_path: Path) -> None:
    site = unstripped_extension.parents[1]
    not_elf = site / "wrapt" / "fake.so"
    not_elf.write_bytes(b"#!/bin/sh\n" * 10)
    before = unstripped_extension.stat().st_size
    saved = slim(site, SlimSpec(strip=(("**/*.so", "symbols"),)))
    after = unstripped_extension.stat().st_size
    assert after < before and saved == before - after
    assert not_elf.read_bytes() == b"#!/bin/sh\n" * 10
    load = ("import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('wrapt._wrappers', {str(unstripped_extension)!r})\n"
            "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
            "print(module.ObjectProxy([1, 2]).__len__())\n")
    proc = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True, check=False)
    assert proc.stdout.strip() == "2", proc.stderr


def test_strip_without_binutils_is_a_clear_error(unstripped_extension: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build.shutil, "which", lambda name: None)
    with pytest.raises(BundleError, match="`strip` is not on PATH"):
        slim(unstripped_extension.parents[1], SlimSpec(strip=(("**/*.so", "symbols"),)))


def test_filtering_a_lock_twice_keeps_one_header_naming_everything_dropped(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.txt"
    lock.write_text("alpha==1.0 \\\n    --hash=sha256:aa\n    # via x\n"
                    "beta==2.0 \\\n    --hash=sha256:bb\n"
                    "gamma==3.0 \\\n    --hash=sha256:cc\n")
    assert filter_lock(lock, SlimSpec(excluded={"alpha": "r"})) == ["alpha"]
    assert filter_lock(lock, SlimSpec(excluded={"gamma": "r"})) == ["alpha", "gamma"]
    lines = lock.read_text().splitlines()
    assert [line for line in lines if line.startswith("# Filtered")] == [lines[0]]
    assert lines[0].endswith("alpha, gamma")
    assert [line for line in lines if "==" in line] == ["beta==2.0 \\"]


def test_image_env_reads_the_final_stage_of_the_dockerfile(tmp_path: Path) -> None:
    folder = tmp_path / "packaging" / "fn"
    folder.mkdir(parents=True)
    (folder / "Dockerfile").write_text("FROM base AS build\nENV BUILD_ONLY=1\n"
                                       "FROM base\n# ENV COMMENTED=1\n"
                                       "ENV A=1 \\\n    B=\"two words\"\nENV LEGACY some value\n")
    assert image_env(tmp_path, "fn") == {"A": "1", "B": "two words", "LEGACY": "some value"}


def test_the_inference_image_keeps_openblas_to_one_thread() -> None:
    env = image_env(Path(__file__).resolve().parents[2], "inference")
    assert env["OPENBLAS_NUM_THREADS"] == "1"
    assert env["MODEL_DIR"] == "/opt/ml/model"


def test_image_env_names_a_missing_dockerfile(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="Dockerfile: cannot read"):
        image_env(tmp_path, "nope")
