"""The training entry point SageMaker runs (`python -m lambdaforge.training`).

One process per device under torchrun when there are several; bf16 autocast on CUDA;
a checkpoint every N steps and on SIGTERM; metric lines for MetricDefinitions; the reason
for any failure in /opt/ml/output/failure and a non-zero exit.
"""

from __future__ import annotations

import math
import signal
import sys
import time
import traceback
from types import FrameType
from typing import Any

import numpy as np

from lambdaforge.errors import LambdaforgeError
from lambdaforge.recipes import get_recipe
from lambdaforge.recipes.base import Arrays, Dataset, Hyperparameters, Recipe
from lambdaforge.training import distributed
from lambdaforge.training.checkpoint import load_latest, save_checkpoint
from lambdaforge.training.contract import TrainingEnv
from lambdaforge.training.errors import InterruptedTrainingError
from lambdaforge.training.hparams import parse_hyperparameters
from lambdaforge.training.metrics import metric_line
from lambdaforge.training.output import write_model_dir

EXIT_FAILED = 1
EXIT_INTERRUPTED = 143
LOG_EVERY = 10


class _Stop:
    """Set by SIGTERM; the loop checks it after each step (SageMaker allows 120 s to save)."""

    requested = False

    @classmethod
    def handler(cls, signum: int, frame: FrameType | None) -> None:
        cls.requested = True
        print("[lambdaforge] SIGTERM received: saving a checkpoint and stopping", flush=True)


def _log(msg: str) -> None:
    print(f"[lambdaforge] {msg}", flush=True)


def _evaluate(model: Any, recipe: Recipe, inputs: Arrays, labels: np.ndarray, device: Any,
              batch: int = 128) -> float:
    import torch

    names = [s.name for s in recipe.input_specs()]
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(labels), batch):
            args = [torch.from_numpy(inputs[n][i:i + batch]).to(device) for n in names]
            out.append(model(*args).float().cpu().numpy())
    model.train()
    return recipe.metric(np.concatenate(out), labels)


def train(env: TrainingEnv, recipe: Recipe, hp: Hyperparameters) -> int:
    import torch
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel

    ctx = distributed.init()
    started = time.time()
    torch.manual_seed(hp.seed)
    data: Dataset = recipe.load_dataset(env.channel("train"), hp)
    names = [s.name for s in recipe.input_specs()]
    model = recipe.build_model(len(data.labels), hp).to(ctx.device)
    params = list(recipe.trainable_parameters(model))
    if not params:
        raise LambdaforgeError(f"recipe {recipe.name!r} has no trainable parameters")
    optimizer = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)

    n_train = len(data.train_labels)
    per_rank = math.ceil(n_train / ctx.world_size)
    steps_per_epoch = max(1, math.ceil(per_rank / hp.batch_size))
    total_steps = hp.epochs * steps_per_epoch
    if hp.max_steps:
        total_steps = min(total_steps, hp.max_steps)
    warmup = max(1, total_steps // 20)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    step = 0
    state = load_latest(env.checkpoint_dir)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = int(state["step"])
        if ctx.is_main:
            _log(f"resuming from checkpoint step={step} of {total_steps}")
    ddp = DistributedDataParallel(model) if ctx.distributed else model
    use_bf16 = ctx.device.type == "cuda" and hp.bf16 and torch.cuda.is_bf16_supported()
    if ctx.is_main:
        _log(f"recipe={recipe.name} device={ctx.device} world_size={ctx.world_size} bf16={use_bf16} "
             f"train_rows={n_train} test_rows={len(data.test_labels)} steps={total_steps}")

    def checkpoint() -> None:
        if ctx.is_main:
            save_checkpoint(env.checkpoint_dir, step, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "step": step,
            })

    signal.signal(signal.SIGTERM, _Stop.handler)
    train_x = {n: torch.from_numpy(data.train_inputs[n]) for n in names}
    train_y = torch.from_numpy(data.train_labels)
    ddp.train()
    window_loss, window_rows, window_start = 0.0, 0, time.time()
    while step < total_steps:
        epoch, in_epoch = divmod(step, steps_per_epoch)
        gen = torch.Generator().manual_seed(hp.seed * 1000 + epoch)
        order = torch.randperm(n_train, generator=gen)
        if len(order) < per_rank * ctx.world_size:  # every rank must take the same number of steps
            order = torch.cat([order, order[:per_rank * ctx.world_size - len(order)]])
        order = order[ctx.rank::ctx.world_size]
        for b in range(in_epoch, steps_per_epoch):
            idx = order[b * hp.batch_size:(b + 1) * hp.batch_size]
            if len(idx) == 0:
                break
            args = recipe.augment([train_x[n][idx] for n in names], gen, hp)
            args = [a.to(ctx.device, non_blocking=True) for a in args]
            target = train_y[idx].to(ctx.device)
            with torch.autocast(device_type=ctx.device.type, dtype=torch.bfloat16, enabled=use_bf16):
                logits = ddp(*args)
            loss = F.cross_entropy(logits.float(), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            window_loss += float(loss.detach()) * len(idx)
            window_rows += len(idx)
            if ctx.is_main and (step % LOG_EVERY == 0 or step == total_steps):
                elapsed = max(time.time() - window_start, 1e-9)
                print(metric_line(epoch=epoch + 1, step=step, train_loss=window_loss / window_rows,
                                  samples_per_sec=window_rows * ctx.world_size / elapsed,
                                  lr=float(scheduler.get_last_lr()[0])), flush=True)
                window_loss, window_rows, window_start = 0.0, 0, time.time()
            if step % hp.checkpoint_every == 0:
                checkpoint()
            if _Stop.requested:
                checkpoint()
                raise InterruptedTrainingError(
                    f"interrupted by SIGTERM at step {step}/{total_steps}; checkpoint saved, a rerun resumes")
            if step >= total_steps:
                break
        if ctx.is_main and (step % steps_per_epoch == 0 or step >= total_steps):
            value = _evaluate(model, recipe, data.test_inputs, data.test_labels, ctx.device)
            print(metric_line(epoch=epoch + 1, step=step, test_metric=value,
                              **{f"test_{recipe.primary_metric}": value}), flush=True)

    distributed.barrier(ctx)
    if ctx.is_main:
        checkpoint()
        final = _evaluate(model, recipe, data.test_inputs, data.test_labels, ctx.device)
        manifest = write_model_dir(
            env.model_dir, model=model, recipe=recipe, data=data, hp=hp, job_name=env.job_name,
            torch_metric=final, device=str(ctx.device), world_size=ctx.world_size, steps=step,
            seconds=time.time() - started)
        print(metric_line(test_metric=manifest.metrics[recipe.primary_metric],
                          parity_max_abs_diff=manifest.metrics["parity_max_abs_diff"]), flush=True)
        _log(f"wrote {env.model_dir} ({recipe.primary_metric}={manifest.metrics[recipe.primary_metric]:.4f}, "
             f"{time.time() - started:.1f}s)")
    distributed.barrier(ctx)
    distributed.shutdown(ctx)
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        env = TrainingEnv.from_environ()
    except LambdaforgeError as exc:
        print(f"[lambdaforge] error: {exc}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    try:
        recipe = get_recipe(str(env.hyperparameters.get("recipe", "digits")))
        hp = parse_hyperparameters(recipe, env.hyperparameters)
        if distributed.needs_launch(env, hp):
            code = distributed.launch(env, hp)
            if code != 0 and not env.failure_file.exists():
                env.write_failure(f"a training process exited with code {code}")
            return code
        return train(env, recipe, hp)
    except InterruptedTrainingError as exc:
        env.write_failure(str(exc))
        print(f"[lambdaforge] {exc}", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except LambdaforgeError as exc:
        env.write_failure(str(exc))
        print(f"[lambdaforge] error: {exc}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    except Exception as exc:
        env.write_failure(f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
        return EXIT_FAILED
