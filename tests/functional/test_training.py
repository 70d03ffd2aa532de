"""The training harness, run for real through `python -m lambdaforge.training`."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from lambdaforge.artifact import open_model_dir
from lambdaforge.recipes import get_recipe
from lambdaforge.training import parse_line
from lambdaforge.training.runner import JobTree, run_entry_point

EXPECTED_FILES = {"model.onnx", "model.safetensors", "eval.npz", "calibration.npz"}


def start(tmp_path: Path, hps: dict[str, object], data: Path | None = None) -> tuple[JobTree, Path]:
    data = data or get_recipe(str(hps.get("recipe", "digits"))).write_sample_data(tmp_path / "data")
    tree = JobTree(tmp_path / "opt" / "ml")
    tree.prepare({"train": data}, hps)
    return tree, data


def test_digits_writes_the_model_directory_and_metric_lines(digits_model: Path) -> None:
    md = open_model_dir(digits_model)
    assert set(md.manifest.files) >= EXPECTED_FILES
    assert md.manifest.metrics["accuracy"] >= 0.95
    assert md.manifest.metrics["parity_max_abs_diff"] < 1e-3
    assert md.manifest.training.dataset_version and md.manifest.training.steps > 0


def test_the_shipped_regexes_capture_what_training_prints(tmp_path: Path) -> None:
    tree, data = start(tmp_path, {"recipe": "digits", "epochs": 2})
    lines: list[str] = []
    code, _ = run_entry_point(tree, {"train": data}, "job-regex", on_line=lines.append)
    assert code == 0
    seen: dict[str, float] = {}
    for line in lines:
        seen.update(parse_line(line))
    assert {"train:loss", "train:samples_per_sec", "train:epoch", "test:metric", "test:accuracy",
            "export:parity_max_abs_diff"} <= set(seen)
    assert 0.0 < seen["test:accuracy"] <= 1.0


def test_two_process_ddp_on_cpu_writes_the_same_layout(tmp_path: Path) -> None:
    tree, data = start(tmp_path, {"recipe": "digits", "epochs": 3, "nproc_per_node": 2})
    lines: list[str] = []
    code, reason = run_entry_point(tree, {"train": data}, "job-ddp", on_line=lines.append)
    assert code == 0, reason
    assert any("world_size=2" in line for line in lines)
    md = open_model_dir(tree.model_dir)
    assert md.manifest.training.world_size == 2
    assert set(md.manifest.files) >= EXPECTED_FILES


def _run_until_checkpoint(tree: JobTree, data: Path, sig: int) -> tuple[subprocess.Popen[str], list[str], float]:
    procs: list[subprocess.Popen[str]] = []
    lines: list[str] = []
    import threading

    result: dict[str, object] = {}

    def target() -> None:
        result["out"] = run_entry_point(tree, {"train": data}, "job-kill", on_line=lines.append,
                                        process_started=procs.append)

    thread = threading.Thread(target=target)
    thread.start()
    deadline = time.time() + 120
    while time.time() < deadline and not list(tree.checkpoint_dir.glob("checkpoint-*.pt")):
        time.sleep(0.05)
    assert list(tree.checkpoint_dir.glob("checkpoint-*.pt")), "no checkpoint was written"
    sent = time.time()
    procs[0].send_signal(sig)
    thread.join(timeout=120)
    return procs[0], lines, time.time() - sent


def test_a_killed_run_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    tree, data = start(tmp_path, {"recipe": "digits", "epochs": 30, "checkpoint_every": 5})
    proc, _, _ = _run_until_checkpoint(tree, data, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    saved = json.loads((tree.checkpoint_dir / "latest.json").read_text())["step"]
    assert saved >= 5 and not (tree.model_dir / "manifest.json").exists()

    lines: list[str] = []
    code, reason = run_entry_point(tree, {"train": data}, "job-kill", on_line=lines.append)
    assert code == 0, reason
    resumed = [line for line in lines if "resuming from checkpoint" in line]
    assert resumed and f"step={saved} " in resumed[0]
    assert open_model_dir(tree.model_dir).manifest.training.steps == 30 * 23  # 1437 rows / 64 per step


def test_sigterm_saves_a_checkpoint_and_exits_quickly(tmp_path: Path) -> None:
    tree, data = start(tmp_path, {"recipe": "digits", "epochs": 200, "checkpoint_every": 5})
    proc, lines, seconds = _run_until_checkpoint(tree, data, signal.SIGTERM)
    assert proc.returncode == 143
    assert seconds < 30  # SageMaker allows 120 s
    assert "SIGTERM" in tree.failure_file.read_text()
    assert any("SIGTERM received" in line for line in lines)
    assert (tree.checkpoint_dir / "latest.json").is_file()


def test_bad_data_fails_with_a_reason_naming_the_file_and_line(tmp_path: Path) -> None:
    data = tmp_path / "data" / "digits.csv"
    data.parent.mkdir(parents=True)
    header = "label," + ",".join(f"p{i}" for i in range(64))
    data.write_text(header + "\n" + "3," + ",".join(["1"] * 64) + "\n" + "x," + ",".join(["1"] * 64) + "\n")
    tree, _ = start(tmp_path, {"recipe": "digits"}, data=data.parent)
    code, reason = run_entry_point(tree, {"train": data.parent}, "job-bad")
    assert code == 1
    assert reason is not None and "digits.csv:3" in reason and "not a number" in reason


def test_missing_columns_and_unknown_recipe_fail_cleanly(tmp_path: Path) -> None:
    data = tmp_path / "data" / "x.csv"
    data.parent.mkdir(parents=True)
    data.write_text("a,b\n1,2\n")
    tree, _ = start(tmp_path, {"recipe": "text"}, data=data.parent)
    code, reason = run_entry_point(tree, {"train": data.parent}, "job-bad")
    assert code == 1 and reason is not None and "missing column(s) text, label" in reason

    tree2, _ = start(tmp_path / "b", {"recipe": "nope"}, data=data.parent)
    code, reason = run_entry_point(tree2, {"train": data.parent}, "job-bad")
    assert code == 1 and reason is not None and "unknown recipe 'nope'" in reason


@pytest.mark.parametrize("pattern", ["checkpoint-*.pt"])
def test_checkpoints_are_read_with_weights_only(tmp_path: Path, pattern: str) -> None:
    """A checkpoint holding a pickled object (not just tensors) is skipped, not executed."""
    import pickle

    import torch

    from lambdaforge.training.checkpoint import load_latest, save_checkpoint

    save_checkpoint(tmp_path, 5, {"step": 5, "model": {"w": torch.zeros(2)}})
    assert load_latest(tmp_path) is not None

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("pwned",))

    (tmp_path / "checkpoint-00000009.pt").write_bytes(pickle.dumps({"step": 9, "x": Evil()}))
    state = load_latest(tmp_path)
    assert state is not None and state["step"] == 5
    assert list(tmp_path.glob(pattern))
