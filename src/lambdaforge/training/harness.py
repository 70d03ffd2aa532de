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
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

import numpy as np

from lambdaforge.errors import LambdaforgeError
from lambdaforge.recipes import get_recipe
from lambdaforge.recipes.base import Arrays, Dataset, Recipe
from lambdaforge.recipes.hparams import Hyperparameters, parse_hyperparameters
from lambdaforge.training import distributed
from lambdaforge.training.checkpoint import load_latest, save_checkpoint
from lambdaforge.training.contract import TrainingEnv
from lambdaforge.training.errors import InterruptedTrainingError, TrainingError
from lambdaforge.training.lock import check_torch
from lambdaforge.training.metrics import metric_line
from lambdaforge.training.output import RunInfo, write_model_dir

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
    mask = inputs.get("attention_mask")
    # Rows padded on the right (a tokenizer's): score them shortest first, each batch cut after its last real
    # token, so short rows do not pay for the longest one's padding. The logits are the same up to float
    # rounding (other batch shapes block the kernels differently).
    ends = None
    if mask is not None and mask.ndim == 2:
        ends = mask.shape[1] - np.argmax(mask[:, ::-1] != 0, axis=1)
    order = np.argsort(ends, kind="stable") if ends is not None else np.arange(len(labels))
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(labels), batch):
            rows = order[i:i + batch]
            cut = int(ends[rows].max()) if ends is not None else None
            args = [torch.from_numpy(np.ascontiguousarray(
                inputs[n][rows][:, :cut] if cut is not None and mask is not None and inputs[n].shape == mask.shape
                else inputs[n][rows])).to(device) for n in names]
            out.append(model(*args).float().cpu().numpy())
    model.train()
    logits = np.empty_like(np.concatenate(out))
    logits[order] = np.concatenate(out)
    return recipe.metric(logits, labels)


def _lr_schedule(total_steps: int) -> Callable[[int], float]:
    """Linear warm-up over the first 5% of the steps, then cosine decay to zero."""
    warmup = max(1, total_steps // 20)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return schedule


@dataclass(frozen=True)
class _Plan:
    """How many rows each rank sees and how many steps the run takes."""

    n_train: int
    per_rank: int
    steps_per_epoch: int
    total_steps: int

    @classmethod
    def of(cls, n_train: int, world_size: int, hp: Hyperparameters) -> _Plan:
        per_rank = math.ceil(n_train / world_size)
        steps_per_epoch = max(1, math.ceil(per_rank / hp.batch_size))
        total_steps = hp.epochs * steps_per_epoch
        if hp.max_steps:
            total_steps = min(total_steps, hp.max_steps)
        return cls(n_train, per_rank, steps_per_epoch, total_steps)


class _Run:
    """One training run's state: model, optimizer, schedule, the step reached, the loss window."""

    def __init__(self, env: TrainingEnv, recipe: Recipe, hp: Hyperparameters, ctx: distributed.DistContext,
                 data: Dataset) -> None:
        import torch
        from torch.nn.parallel import DistributedDataParallel

        self.env, self.recipe, self.hp, self.ctx, self.data = env, recipe, hp, ctx, data
        self.names = [s.name for s in recipe.input_specs()]
        self.model = recipe.build_model(len(data.labels), hp).to(ctx.device)
        params = list(recipe.trainable_parameters(self.model))
        if not params:
            raise TrainingError(f"recipe {recipe.name!r} has no trainable parameters")
        self.optimizer = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
        self.plan = _Plan.of(len(data.train_labels), ctx.world_size, hp)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_schedule(self.plan.total_steps))
        self.step = self._resume()
        self.ddp = DistributedDataParallel(self.model) if ctx.distributed else self.model
        self.use_bf16 = ctx.device.type == "cuda" and hp.bf16 and torch.cuda.is_bf16_supported()
        self.train_x = {n: torch.from_numpy(data.train_inputs[n]) for n in self.names}
        self.train_y = torch.from_numpy(data.train_labels)
        self.window_loss, self.window_rows, self.window_start = 0.0, 0, time.time()

    def _resume(self) -> int:
        state = load_latest(self.env.checkpoint_dir)
        if state is None:
            return 0
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        step = int(state["step"])
        if self.ctx.is_main:
            _log(f"resuming from checkpoint step={step} of {self.plan.total_steps}")
        return step

    def checkpoint(self) -> None:
        if self.ctx.is_main:
            save_checkpoint(self.env.checkpoint_dir, self.step, {
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "step": self.step,
            })

    def announce(self) -> None:
        if self.ctx.is_main:
            ctx, plan = self.ctx, self.plan
            _log(f"recipe={self.recipe.name} device={ctx.device} world_size={ctx.world_size} bf16={self.use_bf16} "
                 f"train_rows={plan.n_train} test_rows={len(self.data.test_labels)} steps={plan.total_steps}")
            print(metric_line(step=self.step, total_steps=plan.total_steps), flush=True)

    def _order(self, epoch: int) -> tuple[Any, Any]:
        """This rank's share of the epoch's shuffle, and the generator augmentation draws from."""
        import torch

        ctx, plan = self.ctx, self.plan
        gen = torch.Generator().manual_seed(self.hp.seed * 1000 + epoch)
        order = torch.randperm(plan.n_train, generator=gen)
        if len(order) < plan.per_rank * ctx.world_size:  # every rank must take the same number of steps
            order = torch.cat([order, order[:plan.per_rank * ctx.world_size - len(order)]])
        return order[ctx.rank::ctx.world_size], gen

    def _train_step(self, idx: Any, gen: Any) -> None:
        import torch
        import torch.nn.functional as F

        device = self.ctx.device
        args = self.recipe.augment([self.train_x[n][idx] for n in self.names], gen, self.hp)
        args = [a.to(device, non_blocking=True) for a in args]
        target = self.train_y[idx].to(device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=self.use_bf16):
            logits = self.ddp(*args)
        loss = F.cross_entropy(logits.float(), target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        self.window_loss += float(loss.detach()) * len(idx)
        self.window_rows += len(idx)

    def _after_step(self, epoch: int) -> None:
        """Log the loss window, checkpoint on schedule, and stop cleanly on SIGTERM."""
        total = self.plan.total_steps
        if self.ctx.is_main and (self.step % LOG_EVERY == 0 or self.step == total):
            elapsed = max(time.time() - self.window_start, 1e-9)
            print(metric_line(epoch=epoch + 1, step=self.step, train_loss=self.window_loss / self.window_rows,
                              samples_per_sec=self.window_rows * self.ctx.world_size / elapsed,
                              lr=float(self.scheduler.get_last_lr()[0])), flush=True)
            self.window_loss, self.window_rows, self.window_start = 0.0, 0, time.time()
        if self.step % self.hp.checkpoint_every == 0:
            self.checkpoint()
        if _Stop.requested:
            self.checkpoint()
            raise InterruptedTrainingError(
                f"interrupted by SIGTERM at step {self.step}/{total}; checkpoint saved, a rerun resumes")

    def epoch(self) -> None:
        """Train from the current step to the end of its epoch (or of the run), then evaluate."""
        plan, hp = self.plan, self.hp
        epoch, in_epoch = divmod(self.step, plan.steps_per_epoch)
        order, gen = self._order(epoch)
        for b in range(in_epoch, plan.steps_per_epoch):
            idx = order[b * hp.batch_size:(b + 1) * hp.batch_size]
            if len(idx) == 0:
                break
            self._train_step(idx, gen)
            self._after_step(epoch)
            if self.step >= plan.total_steps:
                break
        if self.ctx.is_main and (self.step % plan.steps_per_epoch == 0 or self.step >= plan.total_steps):
            value = self.evaluate()
            print(metric_line(epoch=epoch + 1, step=self.step, test_metric=value,
                              **{f"test_{self.recipe.primary_metric}": value}), flush=True)

    def evaluate(self) -> float:
        return _evaluate(self.model, self.recipe, self.data.test_inputs, self.data.test_labels, self.ctx.device)

    def finish(self, started: float) -> None:
        """The final checkpoint and the model directory (main rank only)."""
        self.checkpoint()
        run = RunInfo(job_name=self.env.job_name, torch_metric=self.evaluate(), device=str(self.ctx.device),
                      world_size=self.ctx.world_size, steps=self.step, seconds=time.time() - started)
        md = write_model_dir(self.env.model_dir, model=self.model, recipe=self.recipe, data=self.data, hp=self.hp,
                             run=run)
        metrics, metric = md.manifest.metrics, self.recipe.primary_metric
        print(metric_line(test_metric=metrics[metric], parity_max_abs_diff=metrics["parity_max_abs_diff"]),
              flush=True)
        _log(f"wrote {self.env.model_dir} ({metric}={metrics[metric]:.4f}, {time.time() - started:.1f}s)")


def train(env: TrainingEnv, recipe: Recipe, hp: Hyperparameters) -> int:
    import torch

    ctx = distributed.init()
    if env.num_gpus > 0 and ctx.device.type != "cuda":
        raise TrainingError(f"the instance has {env.num_gpus} GPU(s) but torch {torch.__version__} cannot use "
                            "them (is the host's CUDA driver older than this torch build needs?): refusing to "
                            "train on the CPU of a GPU instance")
    started = time.time()
    torch.manual_seed(hp.seed)
    data: Dataset = recipe.load_dataset(env.channel("train"), hp)
    run = _Run(env, recipe, hp, ctx, data)
    run.announce()
    signal.signal(signal.SIGTERM, _Stop.handler)
    run.ddp.train()
    while run.step < run.plan.total_steps:
        run.epoch()
    distributed.barrier(ctx)
    if ctx.is_main:
        run.finish(started)
    distributed.barrier(ctx)
    distributed.shutdown(ctx)
    return 0


def main(argv: list[str] | None = None, *, from_bundle: bool = False) -> int:
    """`from_bundle`: started by the source bundle's train.py (a SageMaker job), whose lock names the torch
    it was tested with; `lambdaforge train` may run any torch the project supports."""
    try:
        env = TrainingEnv.from_environ()
    except LambdaforgeError as exc:
        print(f"[lambdaforge] error: {exc}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    try:
        if from_bundle:
            import torch

            check_torch(torch.__version__)
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
