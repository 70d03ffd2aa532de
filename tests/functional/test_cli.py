"""The CLI: clear messages naming the file and the problem, exit codes, and `package`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lambdaforge.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600, check=False)


@pytest.mark.parametrize(("args", "code", "message"), [  # {tmp} stands for the test's temporary directory
    pytest.param(("quantize", "--model", "{tmp}/missing", "--out", "{tmp}/o"), 2, "missing: not a directory",
                 id="quantize-missing-model"),
    pytest.param(("train", "--recipe", "nope"), 2, "unknown recipe 'nope'", id="train-unknown-recipe"),
    pytest.param(("quantize", "--model", "{tmp}", "--out", "{tmp}/o", "--mode", "int4"), 2, "mode must be one of",
                 id="quantize-unknown-mode"),
    pytest.param(("serve", "--model", "{tmp}"), 2, "no manifest.json", id="serve-without-manifest"),
    pytest.param(("train", "--hp", "epochs"), 2, "is not key=value", id="train-hp-not-key-value"),
    pytest.param(("train", "--data", "{tmp}/nodata.csv"), 2, "nodata.csv: data path does not exist",
                 id="train-missing-data"),
])
def test_errors_are_messages_not_tracebacks(tmp_path: Path, args: tuple[str, ...], code: int, message: str) -> None:
    proc = cli(*(a.format(tmp=tmp_path) for a in args))
    output = " ".join((proc.stdout + proc.stderr).split())  # rich wraps long lines
    assert proc.returncode == code, (args, proc.returncode, output)
    assert message in output, (args, output)
    assert "Traceback" not in output, (args, output)


def test_a_failed_training_names_the_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nhello,a\n,b\n")
    proc = cli("train", "--recipe", "text", "--data", str(bad), "--out", str(tmp_path / "m"))
    output = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 1
    assert "bad.csv:3: empty text" in output and "Traceback" not in output


def test_quantize_gate_failure_exits_1_with_the_report(digits_model: Path, tmp_path: Path) -> None:
    proc = cli("quantize", "--model", str(digits_model), "--out", str(tmp_path / "q"), "--mode", "static",
               "--min-metric", "1.0")
    assert proc.returncode == 1
    assert "accuracy gate failed" in " ".join(proc.stderr.split())
    assert (tmp_path / "q" / "quantization_report.md").is_file()


def test_package_assembles_a_build_context_and_reports_the_payload(digits_int8: Path, tmp_path: Path) -> None:
    out = tmp_path / "ctx"
    proc = cli("package", "--model", str(digits_int8), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    for rel in ("Dockerfile", "packaging/inference/requirements.txt", "packaging/inference/slim.txt",
                "src/lambdaforge/runtime/predictor.py", "functions/inference/app.py", "model/manifest.json"):
        assert (out / rel).is_file(), rel
    assert "runtime payload of inference" in proc.stdout and "total" in proc.stdout
    proc = cli("package", "--model", str(digits_int8), "--out", str(tmp_path / "ctx2"), "--budget-mb", "10")
    assert proc.returncode == 1 and "exceeds the budget of 10 MiB" in " ".join(proc.stderr.split())
