"""The SageMaker training contract: the /opt/ml tree and the SM_* variables.

SageMaker script mode sets these in the container; `lambdaforge train` and the local
SageMaker executor build the same tree in a temporary folder and set the same variables,
so there is one entry point and one contract.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lambdaforge import envvars
from lambdaforge.training.errors import TrainingError

DEFAULT_OPT_ML = Path("/opt/ml")


def _json(raw: str, what: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise TrainingError(f"{what} is not valid JSON: {exc}") from exc


def decode_hyperparameters(raw: Mapping[str, Any]) -> dict[str, Any]:
    """SageMaker passes every value as a string, and its SDKs JSON-encode them; undo both."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, str):
            try:
                decoded = json.loads(value)
            except json.JSONDecodeError:
                decoded = value
            out[key] = decoded if isinstance(decoded, str | int | float | bool) or decoded is None else value
        else:
            out[key] = value
    return out


@dataclass(frozen=True)
class TrainingEnv:
    opt_ml: Path
    model_dir: Path
    channels: dict[str, Path]
    hyperparameters: dict[str, Any]
    num_gpus: int
    hosts: tuple[str, ...]
    current_host: str
    checkpoint_dir: Path
    output_dir: Path
    job_name: str

    @property
    def failure_file(self) -> Path:
        return self.output_dir / "failure"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> TrainingEnv:
        env = os.environ if environ is None else environ
        opt_ml = Path(env.get(envvars.OPT_ML, str(DEFAULT_OPT_ML)))
        config_dir = Path(env.get(envvars.SM_INPUT_CONFIG_DIR, str(opt_ml / "input" / "config")))

        if envvars.SM_HPS in env:
            hps = _json(env[envvars.SM_HPS], envvars.SM_HPS)
        elif (config_dir / "hyperparameters.json").is_file():
            hps = _json((config_dir / "hyperparameters.json").read_text(), str(config_dir / "hyperparameters.json"))
        else:
            hps = {}
        if not isinstance(hps, dict):
            raise TrainingError("hyperparameters must be a JSON object")

        channels: dict[str, Path] = {}
        for key, value in env.items():
            if key.startswith(envvars.SM_CHANNEL_PREFIX):
                channels[key[len(envvars.SM_CHANNEL_PREFIX):].lower()] = Path(value)
        if not channels:
            data_root = opt_ml / "input" / "data"
            if data_root.is_dir():
                channels = {p.name: p for p in sorted(data_root.iterdir()) if p.is_dir()}

        resource: dict[str, Any] = {}
        if (config_dir / "resourceconfig.json").is_file():
            resource = _json((config_dir / "resourceconfig.json").read_text(), "resourceconfig.json")
        hosts = env.get(envvars.SM_HOSTS)
        host_list = tuple(_json(hosts, envvars.SM_HOSTS)) if hosts else tuple(resource.get("hosts", ["algo-1"]))
        current = env.get(envvars.SM_CURRENT_HOST) or resource.get("current_host") or host_list[0]
        num_gpus_raw = env.get(envvars.SM_NUM_GPUS)
        num_gpus = int(num_gpus_raw) if num_gpus_raw is not None else _cuda_count()
        return cls(
            opt_ml=opt_ml,
            model_dir=Path(env.get(envvars.SM_MODEL_DIR, str(opt_ml / "model"))),
            channels=channels,
            hyperparameters=decode_hyperparameters(hps),
            num_gpus=num_gpus,
            hosts=host_list,
            current_host=current,
            checkpoint_dir=Path(env.get(envvars.CHECKPOINT_DIR, str(opt_ml / "checkpoints"))),
            output_dir=opt_ml / "output",
            job_name=env.get(envvars.SM_TRAINING_JOB_NAME, "local"),
        )

    def channel(self, preferred: str = "train") -> Path:
        if preferred in self.channels:
            return self.channels[preferred]
        if len(self.channels) == 1:
            return next(iter(self.channels.values()))
        known = ", ".join(sorted(self.channels)) or "none"
        raise TrainingError(f"no '{preferred}' data channel (channels: {known})")

    def write_failure(self, reason: str) -> None:
        """SageMaker shows the first 1024 characters of this file as the job's FailureReason."""
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            self.failure_file.write_text(reason[:1024], encoding="utf-8")
        except OSError:
            pass


def _cuda_count() -> int:
    try:
        import torch

        return int(torch.cuda.device_count())
    except ImportError:  # pragma: no cover
        return 0
