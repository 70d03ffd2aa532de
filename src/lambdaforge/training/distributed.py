"""One process or many: torchrun + DistributedDataParallel, the same code on CPU and GPU.

When SageMaker gives several GPUs or hosts (or `nproc_per_node` asks for several CPU
processes) and we are not already under torchrun, the harness relaunches itself through
`torch.distributed.run`, one node per SageMaker host.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lambdaforge import envvars
from lambdaforge.recipes.base import Hyperparameters
from lambdaforge.training.contract import TrainingEnv

if TYPE_CHECKING:
    import torch

MASTER_PORT = "29500"


@dataclass(frozen=True)
class DistContext:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def processes_per_node(env: TrainingEnv, hp: Hyperparameters) -> int:
    if hp.nproc_per_node > 0:
        return hp.nproc_per_node
    return max(env.num_gpus, 1)


def needs_launch(env: TrainingEnv, hp: Hyperparameters) -> bool:
    total = processes_per_node(env, hp) * len(env.hosts)
    return total > 1 and envvars.RANK not in os.environ


def master_addr(env: TrainingEnv) -> str:
    """The leader host (SageMaker's algo-1), unless MASTER_ADDR says otherwise (the local executor runs every
    host on this machine and gives loopback: torchrun's C++ rendezvous cannot resolve algo-N here)."""
    if os.environ.get(envvars.MASTER_ADDR):
        return os.environ[envvars.MASTER_ADDR]
    return env.hosts[0] if len(env.hosts) > 1 else "127.0.0.1"


def launch(env: TrainingEnv, hp: Hyperparameters) -> int:
    """Re-run this entry point under torchrun and return its exit code."""
    node_rank = env.hosts.index(env.current_host) if env.current_host in env.hosts else 0
    if len(env.hosts) > 1:
        rendezvous = [f"--nnodes={len(env.hosts)}", f"--node_rank={node_rank}",
                      f"--master_addr={master_addr(env)}",
                      f"--master_port={os.environ.get(envvars.MASTER_PORT, MASTER_PORT)}"]
    else:  # one host: a rendezvous on a free port (a fixed one can be taken by any socket on a busy machine)
        rendezvous = ["--standalone", "--nnodes=1"]
    cmd = [sys.executable, "-m", "torch.distributed.run", *rendezvous,
           f"--nproc_per_node={processes_per_node(env, hp)}", "-m", "lambdaforge.training"]
    print(f"[lambdaforge] launching {' '.join(cmd[2:])}", flush=True)
    # a SIGTERM for this process (a container's stop, where it is PID 1) goes on to torchrun, which hands it
    # to every worker: they save a checkpoint and stop, instead of being killed after the grace period
    started: list[subprocess.Popen[bytes]] = []
    termed: list[bool] = []

    def forward(signum: int, frame: object) -> None:
        termed.append(True)
        for proc in started:
            proc.send_signal(signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        started.append(subprocess.Popen(cmd))
        if termed:  # it came while torchrun was starting
            started[0].send_signal(signal.SIGTERM)
        return started[0].wait()
    finally:
        signal.signal(signal.SIGTERM, previous)


def init() -> DistContext:
    import torch
    import torch.distributed as dist

    world = int(os.environ.get(envvars.WORLD_SIZE, "1"))
    rank = int(os.environ.get(envvars.RANK, "0"))
    local_rank = int(os.environ.get(envvars.LOCAL_RANK, "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank=rank, local_rank=local_rank, world_size=world, device=device)


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        import torch.distributed as dist

        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    if ctx.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
