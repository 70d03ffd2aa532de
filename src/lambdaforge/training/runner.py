"""Run the training entry point under the SageMaker contract in a folder that stands in for /opt/ml.

`lambdaforge train` and the local SageMaker executor both use this, so a local run and a
SageMaker job see the same tree, the same variables and the same hyperparameter encoding.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lambdaforge import envvars

LineSink = Callable[[str], None]


@dataclass(frozen=True)
class JobTree:
    """The /opt/ml layout of a SageMaker training container, rooted anywhere; one per host of a job."""

    root: Path
    hosts: tuple[str, ...] = ("algo-1",)
    current_host: str = "algo-1"

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def checkpoint_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def failure_file(self) -> Path:
        return self.root / "output" / "failure"

    def channel_dir(self, name: str) -> Path:
        return self.root / "input" / "data" / name

    def prepare(self, channels: Mapping[str, Path], hyperparameters: Mapping[str, Any], *,
                encoded: bool = False) -> None:
        """Lay out the tree; `encoded`: the hyperparameters are already SageMaker's strings."""
        config = self.root / "input" / "config"
        config.mkdir(parents=True, exist_ok=True)
        for sub in ("model", "output", "checkpoints", "output/data"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        for name, source in channels.items():
            dest = self.channel_dir(name)
            dest.mkdir(parents=True, exist_ok=True)
            src = Path(source)
            if src.is_file():
                shutil.copyfile(src, dest / src.name)
            elif src.is_dir():
                shutil.copytree(src, dest, dirs_exist_ok=True)
            else:
                from lambdaforge.training.errors import TrainingError

                raise TrainingError(f"{src}: data path does not exist")
        # SageMaker stores every hyperparameter as a string; its SDKs JSON-encode the values.
        strings = {k: (str(v) if encoded else json.dumps(v)) for k, v in hyperparameters.items()}
        (config / "hyperparameters.json").write_text(json.dumps(strings, indent=2))
        (config / "inputdataconfig.json").write_text(json.dumps({n: {"TrainingInputMode": "File"} for n in channels}))
        (config / "resourceconfig.json").write_text(json.dumps(
            {"current_host": self.current_host, "hosts": list(self.hosts), "network_interface_name": "eth0"}))

    def environment(self, job_name: str, channels: Mapping[str, Path]) -> dict[str, str]:
        env = {
            envvars.OPT_ML: str(self.root),
            envvars.SM_MODEL_DIR: str(self.model_dir),
            envvars.SM_OUTPUT_DATA_DIR: str(self.root / "output" / "data"),
            envvars.SM_INPUT_CONFIG_DIR: str(self.root / "input" / "config"),
            envvars.SM_HOSTS: json.dumps(list(self.hosts)),
            envvars.SM_CURRENT_HOST: self.current_host,
            envvars.SM_CHANNELS: json.dumps(sorted(channels)),
            envvars.SM_TRAINING_JOB_NAME: job_name,
            envvars.CHECKPOINT_DIR: str(self.checkpoint_dir),
            "PYTHONUNBUFFERED": "1",
        }
        for name in channels:
            env[envvars.SM_CHANNEL_PREFIX + name.upper()] = str(self.channel_dir(name))
        return env


def run_entry_point(tree: JobTree, channels: Mapping[str, Path], job_name: str, *,
                    on_line: LineSink | None = None, command: list[str] | None = None,
                    extra_env: Mapping[str, str] | None = None, cwd: Path | None = None,
                    process_started: Callable[[subprocess.Popen[str]], None] | None = None,
                    new_session: bool = False) -> tuple[int, str | None]:
    """Run training; return (exit code, failure reason written by the harness, if any)."""
    env = dict(os.environ)
    for key in list(env):
        if key.startswith(envvars.SM_CHANNEL_PREFIX) or key in (envvars.SM_HPS, envvars.RANK, envvars.WORLD_SIZE):
            env.pop(key)
    env.update(tree.environment(job_name, channels))
    env.update(extra_env or {})
    cmd = command or [sys.executable, "-m", "lambdaforge.training"]
    # its own process group: a stop reaches every process of the job (torchrun's workers, the toolkit's script)
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1, start_new_session=new_session)
    if process_started:
        process_started(proc)
    assert proc.stdout is not None
    for line in proc.stdout:
        if on_line:
            on_line(line.rstrip("\n"))
    code = proc.wait()
    reason = tree.failure_file.read_text(encoding="utf-8").strip() if tree.failure_file.is_file() else None
    return code, reason
