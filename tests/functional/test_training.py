"""The training harness, run for real through `python -m lambdaforge.training`."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from lambdaforge.artifact import open_model_dir, sha256_file
from lambdaforge.recipes import get_recipe
from lambdaforge.training import parse_line
from lambdaforge.training.checkpoint import complete_checkpoints, latest_complete_step, load_latest, save_checkpoint
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
    assert code == 0, (reason, lines[-60:])
    assert any("--standalone --nnodes=1" in line for line in lines)  # no fixed port to collide on
    assert any("world_size=2" in line for line in lines)
    md = open_model_dir(tree.model_dir)
    assert md.manifest.training.world_size == 2
    assert set(md.manifest.files) >= EXPECTED_FILES


def _run_until_checkpoint(tree: JobTree, data: Path, sig: int) -> tuple[subprocess.Popen[str], list[str], float]:
    """Start training, wait for a COMPLETE checkpoint (pointer written, its file on disk), then signal it.

    Waiting for the `.pt` file alone races the harness, which writes the pointer after it: the
    signal could land between the two, when no checkpoint is complete yet.
    """
    procs: list[subprocess.Popen[str]] = []
    lines: list[str] = []
    thread = threading.Thread(target=lambda: run_entry_point(
        tree, {"train": data}, "job-kill", on_line=lines.append, process_started=procs.append))
    thread.start()
    deadline = time.monotonic() + 300
    while latest_complete_step(tree.checkpoint_dir) is None and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert latest_complete_step(tree.checkpoint_dir) is not None, "no complete checkpoint was written"
    assert procs and procs[0].poll() is None, "training ended before it could be signalled"
    sent = time.monotonic()
    procs[0].send_signal(sig)
    thread.join(timeout=300)
    assert not thread.is_alive(), "training did not end after the signal"
    return procs[0], lines, time.monotonic() - sent


def _resume(tree: JobTree, data: Path) -> tuple[list[str], list[str]]:
    """Run again; return (the "resuming" lines, every line)."""
    lines: list[str] = []
    code, reason = run_entry_point(tree, {"train": data}, "job-kill", on_line=lines.append)
    assert code == 0, reason
    return [line for line in lines if "resuming from checkpoint" in line], lines


def test_a_killed_run_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    tree, data = start(tmp_path, {"recipe": "digits", "epochs": 10, "checkpoint_every": 5})
    proc, _, _ = _run_until_checkpoint(tree, data, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    saved = latest_complete_step(tree.checkpoint_dir)
    assert saved is not None and saved >= 5 and not (tree.model_dir / "manifest.json").exists()

    resumed, _ = _resume(tree, data)
    assert resumed and f"step={saved} " in resumed[0]
    assert open_model_dir(tree.model_dir).manifest.training.steps == 10 * 23  # 1437 rows / 64 per step


def test_a_run_killed_between_the_checkpoint_file_and_its_pointer_resumes_from_the_complete_one(
        tmp_path: Path) -> None:
    """The race the kill test once hit: a `.pt` file on disk that no pointer names yet is never loaded."""
    import torch

    tree, data = start(tmp_path, {"recipe": "digits", "epochs": 10, "checkpoint_every": 5})
    _run_until_checkpoint(tree, data, signal.SIGKILL)
    saved = latest_complete_step(tree.checkpoint_dir)
    assert saved is not None
    pointed = tree.checkpoint_dir / f"checkpoint-{saved:08d}.pt"
    # the state a kill between the two writes leaves: a newer, whole `.pt` the pointer does not name...
    newer = tree.checkpoint_dir / f"checkpoint-{saved + 5:08d}.pt"
    state = torch.load(pointed, weights_only=True)
    torch.save({**state, "step": saved + 5}, newer)
    # ...and, newer still, a torn one (as a copy that stopped half way would be)
    torn = tree.checkpoint_dir / f"checkpoint-{saved + 10:08d}.pt"
    torn.write_bytes(newer.read_bytes()[: newer.stat().st_size // 2])

    resumed, lines = _resume(tree, data)
    assert resumed and f"step={saved} " in resumed[0], resumed
    assert not [line for line in lines if "skipping" in line]  # the unpointed files were never opened
    assert open_model_dir(tree.model_dir).manifest.training.steps == 10 * 23


def test_checkpoints_without_a_pointer_are_absent(tmp_path: Path) -> None:
    """Killed before the first pointer was written: the run starts from scratch."""
    import torch

    torch.save({"step": 5, "model": {"w": torch.zeros(2)}}, tmp_path / "checkpoint-00000005.pt")
    assert load_latest(tmp_path) is None and latest_complete_step(tmp_path) is None
    save_checkpoint(tmp_path, 10, {"step": 10, "model": {"w": torch.zeros(2)}})
    state = load_latest(tmp_path)
    assert state is not None and state["step"] == 10
    assert not (tmp_path / "checkpoint-00000005.pt").exists()


def test_a_restored_spot_job_keeps_a_complete_checkpoint_to_fall_back_on(tmp_path: Path) -> None:
    """S3 restored the pointer [200, 100] but not checkpoint 200: resuming from 100 and saving 150 must
    keep 100 (not the missing 200) as the fallback, so losing 150 too costs 50 steps, not the run."""
    import torch

    for step in (100, 200):
        save_checkpoint(tmp_path, step, {"step": step, "model": {"w": torch.zeros(2)}})
    (tmp_path / "checkpoint-00000200.pt").unlink()
    state = load_latest(tmp_path)
    assert state is not None and state["step"] == 100
    save_checkpoint(tmp_path, 150, {"step": 150, "model": {"w": torch.zeros(2)}})
    assert [e["step"] for e in complete_checkpoints(tmp_path)] == [150, 100]
    (tmp_path / "checkpoint-00000150.pt").unlink()  # the next interruption loses 150 as well
    state = load_latest(tmp_path)
    assert state is not None and state["step"] == 100


def test_a_pointer_cannot_name_a_file_outside_the_checkpoint_folder(tmp_path: Path) -> None:
    import torch

    outside = tmp_path / "checkpoint-00000007.pt"
    torch.save({"step": 7}, outside)
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "latest.json").write_text(json.dumps(
        {"step": 7, "file": "../checkpoint-00000007.pt", "sha256": sha256_file(outside)}))
    assert load_latest(folder) is None and latest_complete_step(folder) is None


def test_sigterm_saves_a_checkpoint_and_exits_within_sagemakers_grace_period(tmp_path: Path) -> None:
    tree, data = start(tmp_path, {"recipe": "digits", "epochs": 200, "checkpoint_every": 5})
    proc, lines, seconds = _run_until_checkpoint(tree, data, signal.SIGTERM)
    assert proc.returncode == 143
    assert seconds < 120  # SageMaker allows 120 s before SIGKILL (a busy machine is slower, not wrong)
    assert "SIGTERM" in tree.failure_file.read_text()
    assert any("SIGTERM received" in line for line in lines)
    saved = latest_complete_step(tree.checkpoint_dir)
    assert saved is not None and f"at step {saved}/" in tree.failure_file.read_text()


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

    save_checkpoint(tmp_path, 5, {"step": 5, "model": {"w": torch.zeros(2)}})
    assert load_latest(tmp_path) is not None

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("pwned",))

    evil = tmp_path / "checkpoint-00000009.pt"
    evil.write_bytes(pickle.dumps({"step": 9, "x": Evil()}))
    pointer = json.loads((tmp_path / "latest.json").read_text())
    entry = {"step": 9, "file": evil.name, "sha256": sha256_file(evil)}
    (tmp_path / "latest.json").write_text(json.dumps({**entry, "complete": [entry, *pointer["complete"]]}))
    state = load_latest(tmp_path)
    assert state is not None and state["step"] == 5
    assert list(tmp_path.glob(pattern))
