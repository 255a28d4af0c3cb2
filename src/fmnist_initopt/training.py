"""Train one (init, optimizer, seed) run and describe it as the metrics.json dictionary.

The loop keeps the whole data set as tensors on the training device and draws batches by
index from a seeded permutation, so no Python work happens per sample. What it computes is
the brief's loop: cross-entropy, batches of `batch_size` (the last one partial), the epoch
loss as the mean of the batch losses, validation after every epoch, the test set once (and, for the
generalization gap, the training images once, evaluated as the test set is).

`train_run` reads like pytorch/examples' main(): start (or resume from a checkpoint computed the same
way), then per epoch train, validate, report (progress.py) and checkpoint, then the final evaluations and the record.
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from fmnist_initopt import checkpoint, diagnostics
from fmnist_initopt.data import Splits, normalise
from fmnist_initopt.environment import (
    keep_freed_memory,
    precision_in_use,
    seconds_since_process_start,
    usable_cpu_count,
)
from fmnist_initopt.model import build_model, model_record, weight_stats
from fmnist_initopt.optimizers import build_optimizer, hyperparameters_in_use
from fmnist_initopt.progress import RunProgress
from fmnist_initopt.study import RunSpec

METRICS_SCHEMA_VERSION = 1
# Measured on the 2-core CPU (CPU s per 10,000 images, best of 3): 2,000 -> 2.85, 500 -> 1.78,
# 250 -> 1.43; smaller batches keep activations in cache, and batches of 2,000 also cost ~270 MB of peak RSS.
EVAL_BATCH_SIZE = 250
# Steps between checks for a non-finite loss: each check is one host sync (cheap on CPU,
# a stall on GPU), and a diverged run wastes at most this many steps.
DIVERGENCE_CHECK_EVERY = 25
# Channels-last weights make every conv output channels-last, where CPU max pooling is many times
# faster than in the default layout (measured; see benchmarks/). The values are the same.
MEMORY_FORMAT = torch.channels_last
# Every this many optimizer steps, one step is timed between two device syncs; the others run
# without a sync, so the measurement does not slow the GPU down (782 steps per full epoch: 16 timed).
STEP_TIMING_EVERY = 50

log = logging.getLogger(__name__)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The data order of an epoch depends only on the run's seed and the epoch number,
    so a resumed run draws exactly the batches an uninterrupted one would."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def autocast(device: torch.device, precision: str):
    """Where the forward pass and the loss run. bf16: under autocast, so convolutions and matrix
    products compute in bfloat16 while the parameters, their gradients, the optimizer's state and
    the loss (cross-entropy autocasts to float32) stay float32. fp32: a disabled autocast, i.e. plain fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CPU operations are synchronous already)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class StepTimer:
    """Wall time of every `every`-th optimizer step of an epoch, each bracketed by device syncs."""

    device: torch.device
    every: int = STEP_TIMING_EVERY
    seconds: list[float] = field(default_factory=list)
    _started: float = 0.0

    def wants(self, step: int) -> bool:
        return step % self.every == 0

    def start(self) -> None:
        synchronize(self.device)
        self._started = time.perf_counter()

    def stop(self) -> None:
        synchronize(self.device)
        self.seconds.append(time.perf_counter() - self._started)


@torch.inference_mode()
def evaluate(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, precision: str = "fp32"
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over a whole set of uint8 `images`, in large batches."""
    model.eval()
    dtype = next(model.parameters()).dtype
    loss_sum = torch.zeros((), dtype=torch.float64, device=images.device)
    correct = torch.zeros((), dtype=torch.int64, device=images.device)
    for start in range(0, len(labels), EVAL_BATCH_SIZE):
        batch_labels = labels[start : start + EVAL_BATCH_SIZE]
        with autocast(images.device, precision):
            logits = model(normalise(images[start : start + EVAL_BATCH_SIZE], dtype))
            loss_sum += F.cross_entropy(logits, batch_labels, reduction="sum").to(torch.float64)
        correct += (logits.argmax(dim=1) == batch_labels).sum()
    return loss_sum.item() / len(labels), correct.item() / len(labels)


def optimizer_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor, precision: str
) -> torch.Tensor:
    """One training step on one batch: forward, cross-entropy, backward, update; returns the loss."""
    with autocast(images.device, precision):
        loss = F.cross_entropy(model(images), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss


@dataclass
class Divergence:
    epoch: int
    step: int
    # "nan", "inf" or "-inf": strict JSON has no spelling for non-finite numbers
    loss: str


def train_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
    precision: str = "fp32",
    timer: StepTimer | None = None,
) -> tuple[float, Divergence | None]:
    """One pass over the training set (uint8 `images`, normalised batch by batch to the parameters'
    dtype); returns the mean batch loss, or where the loss stopped being finite.
    `timer`, if given, times a sample of the steps."""
    model.train()
    dtype = next(model.parameters()).dtype
    order = torch.randperm(len(labels), generator=generator).to(images.device)
    steps = math.ceil(len(labels) / batch_size)
    step_losses = torch.empty(steps, dtype=torch.float32, device=images.device)
    checked = 0
    for step in range(steps):
        timed = timer is not None and timer.wants(step)
        if timed:
            timer.start()
        index = order[step * batch_size : (step + 1) * batch_size]
        loss = optimizer_step(model, optimizer, normalise(images[index], dtype), labels[index], precision)
        if timed:
            timer.stop()
        step_losses[step] = loss.detach()
        if (step + 1) % DIVERGENCE_CHECK_EVERY == 0 or step + 1 == steps:
            window = step_losses[checked : step + 1]
            finite = torch.isfinite(window)
            if not bool(finite.all()):
                first_bad = checked + int((~finite).nonzero()[0].item())
                return math.nan, Divergence(epoch=-1, step=first_bad + 1, loss=str(float(step_losses[first_bad])))
            checked = step + 1
    return step_losses.to(torch.float64).mean().item(), None


@dataclass
class RunCost:
    """What a run cost the machine: process CPU time, a sample of step times, the load around it.
    Carried in the checkpoint, so a resumed run adds its parts up."""

    timer: StepTimer
    cpu_seconds_before: float = 0.0  # spent by the processes before a resume
    # What this process spent before its first step (Python, imports, data): the per-job fixed cost.
    seconds_before_first_step: float | None = None
    load_average_start: float = field(default_factory=lambda: os.getloadavg()[0])
    _cpu_started: float = field(default_factory=time.process_time)

    def cpu_seconds(self) -> float:
        return self.cpu_seconds_before + time.process_time() - self._cpu_started

    def state(self) -> dict[str, Any]:
        return {
            "process_cpu_seconds": self.cpu_seconds(),
            "step_seconds": list(self.timer.seconds),
            "load_average_start": self.load_average_start,
        }

    def resume(self, state: dict[str, Any]) -> None:
        """Continue the cost of the processes before, as their checkpoint's state() recorded it."""
        self.cpu_seconds_before = state["process_cpu_seconds"]
        self.timer.seconds = list(state["step_seconds"])
        self.load_average_start = state["load_average_start"]

    def record(self) -> dict[str, Any]:
        """The metrics.json "cost" block (described in workflow/schemas/metrics.schema.yaml)."""
        seconds = self.timer.seconds
        return {
            "process_cpu_seconds": self.cpu_seconds(),
            "median_step_seconds": statistics.median(seconds) if seconds else None,
            "steps_timed": len(seconds),
            "load_average_start": self.load_average_start,
            "load_average_end": os.getloadavg()[0],
            "cpu_count": usable_cpu_count(),
            "threads": torch.get_num_threads(),
            "seconds_before_first_step": self.seconds_before_first_step,
        }


def model_and_optimizer(spec: RunSpec, device: torch.device) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """The run's freshly initialised model, laid out for speed on `device`, and its optimizer."""
    model = build_model(spec.init_function, spec.init_kwargs, spec.seed, spec.extra_conv_layers)
    model = model.to(device, memory_format=MEMORY_FORMAT)
    return model, build_optimizer(model, spec.optimizer_class, spec.optimizer_kwargs)


# history: one entry per finished epoch in each list; precision and device say how that epoch was computed
HISTORY_KEYS = ("epoch", "train_loss", "val_loss", "val_accuracy", "epoch_seconds", "precision", "device")


@dataclass
class Run:
    """One run in progress: what it trains, on what, and what it carries from epoch to epoch (the part
    after `grad_norms` is what its checkpoint saves besides the model and optimizer)."""

    spec: RunSpec
    device: torch.device
    precision: str
    data: Splits  # on `device`
    probe: tuple[torch.Tensor, torch.Tensor]
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    grad_norms: diagnostics.GradNormTracker
    history: dict[str, list]
    init_stats: list[dict[str, Any]]
    signal: dict[str, Any]
    cost: RunCost

    @property
    def epochs_done(self) -> int:
        return len(self.history["epoch"])

    def saved_state(self) -> dict[str, Any]:
        return {
            "history": self.history,
            "init_stats": self.init_stats,
            "diagnostics": self.signal,
            "cost": self.cost.state(),
        }


def on_device(splits: Splits, device: torch.device) -> Splits:
    tensors = {
        name: getattr(splits, name).to(device) for name in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")
    }
    return Splits(**tensors, val_source=splits.val_source)


def start(spec: RunSpec, splits: Splits, device: torch.device) -> Run:
    """The run before its first epoch: a freshly initialised model and its measurements at init."""
    cost = RunCost(StepTimer(device))
    precision = precision_in_use(spec.precision, device)
    model, optimizer = model_and_optimizer(spec, device)
    init_stats = weight_stats(model)
    data = on_device(splits, device)
    probe_pixels, probe_labels = diagnostics.probe_batch(data.train_x, data.train_y)
    probe = normalise(probe_pixels), probe_labels
    signal = diagnostics.new_record(model, probe)
    grad_norms = diagnostics.GradNormTracker(optimizer)
    history = {key: [] for key in HISTORY_KEYS}
    return Run(spec, device, precision, data, probe, model, optimizer, grad_norms, history, init_stats, signal, cost)


def resume(run: Run, checkpoint_path: Path | None) -> None:
    """Continue after the last finished epoch of the checkpoint, if it was computed as this run is."""
    saved = checkpoint.load(checkpoint_path, checkpoint.binding(run.spec, run.precision), run.device)
    if saved is None:
        return
    run.model.load_state_dict(saved["model"])
    run.optimizer.load_state_dict(saved["optimizer"])
    torch.set_rng_state(saved["torch_rng"].cpu())
    run.history, run.init_stats, run.signal = saved["history"], saved["init_stats"], saved["diagnostics"]
    run.cost.resume(saved["cost"])
    log.info("%s: resuming after epoch %d from %s", run.spec.run_id, run.epochs_done, checkpoint_path)


def log_start(run: Run) -> None:
    run.cost.seconds_before_first_step = seconds_since_process_start()
    log.info(
        "%s: training in %s on %s with %d thread(s), %.2f s after the process started (%.2f s of CPU time)",
        run.spec.run_id,
        run.precision,
        run.device,
        torch.get_num_threads(),
        run.cost.seconds_before_first_step or math.nan,
        time.process_time(),
    )


def train_and_validate(run: Run, epoch: int) -> Divergence | None:
    """One epoch: train, validate, take the diagnostics, append to the history; or where the loss diverged."""
    started = time.perf_counter()
    data, spec = run.data, run.spec
    generator = epoch_generator(spec.seed, epoch)
    train_loss, divergence = train_epoch(
        run.model, run.optimizer, data.train_x, data.train_y, spec.batch_size, generator, run.precision, run.cost.timer
    )
    if divergence is not None:
        divergence.epoch = epoch
        log.error(
            "%s: loss became %s at epoch %d, step %d; stopping this run",
            spec.run_id,
            divergence.loss,
            epoch,
            divergence.step,
        )
        return divergence
    val_loss, val_accuracy = evaluate(run.model, data.val_x, data.val_y, run.precision)
    seconds = time.perf_counter() - started
    diagnostics.record_epoch(run.signal, epoch, run.model, run.probe, run.grad_norms)
    values = (epoch, train_loss, val_loss, val_accuracy, seconds, run.precision, run.device.type)
    for key, value in zip(HISTORY_KEYS, values, strict=True):
        run.history[key].append(value)
    return None


def final_evaluation(run: Run, images: torch.Tensor, labels: torch.Tensor, diverged: bool) -> dict[str, Any]:
    """Loss and accuracy of the trained model on a set, in the run's precision; null when the run diverged."""
    if diverged:
        return {"loss": None, "accuracy": None}
    loss, accuracy = evaluate(run.model, images, labels, run.precision)
    return {"loss": loss, "accuracy": accuracy}


def metrics_record(run: Run, divergence: Divergence | None, test: dict, train_evaluation: dict) -> dict[str, Any]:
    """The run's metrics.json (described in workflow/schemas/metrics.schema.yaml), less its environment."""
    spec, history = run.spec, run.history
    return {
        "schema_version": METRICS_SCHEMA_VERSION,
        "run": {
            "id": spec.run_id,
            "init": spec.init,
            "optimizer": spec.optimizer,
            "depth": spec.extra_conv_layers,
            "seed": spec.seed,
        },
        "model": model_record(run.model),
        "status": "completed" if divergence is None else "diverged",
        "spec": spec.as_dict(),
        "identity": checkpoint.identity(run.precision),
        "precision": run.precision,
        "hyperparameters": hyperparameters_in_use(run.optimizer),
        "data": {"validation_source": run.data.val_source, **run.data.sizes()},
        "history": history,
        "test": test,
        "train_evaluation": train_evaluation,
        "training_seconds": sum(history["epoch_seconds"]),
        "divergence": None if divergence is None else vars(divergence),
        "init_weight_stats": run.init_stats,
        "diagnostics": run.signal,
        "cost": run.cost.record(),
    }


def train_run(
    spec: RunSpec,
    splits: Splits,
    device: torch.device,
    checkpoint_path: Path | None = None,
    progress: RunProgress | None = None,
) -> dict[str, Any]:
    """Train `spec` to the end (resuming from `checkpoint_path` if it holds a finished epoch computed as
    this run would compute it) and return its metrics. The checkpoint is written after every epoch and is
    left in place: the workflow removes it once Snakemake has succeeded, so that a job rerun meanwhile
    (a requeued group) finds the finished run and only evaluates it again. `progress` reports each epoch
    (by default a log line; in a study, also its record for the study's estimate)."""
    keep_freed_memory()
    progress = progress or RunProgress(spec.run_id, spec.epochs)
    run = start(spec, splits, device)
    resume(run, checkpoint_path)
    log_start(run)
    progress.started(run.history, run.cost.seconds_before_first_step or 0.0)
    divergence = None
    for epoch in range(run.epochs_done + 1, spec.epochs + 1):
        divergence = train_and_validate(run, epoch)
        if divergence is not None:
            break
        progress.epoch_done(run.history)
        if checkpoint_path is not None:
            checkpoint.save(
                checkpoint_path, checkpoint.binding(spec, run.precision), run.model, run.optimizer, run.saved_state()
            )
    run.grad_norms.close()
    diverged = divergence is not None
    test = final_evaluation(run, run.data.test_x, run.data.test_y, diverged)
    if not diverged:
        log.info("%s: test accuracy %.4f, test loss %.4f", spec.run_id, test["accuracy"], test["loss"])
    # The same pass over the images it trained on: the generalization gap, measured as the test set is.
    train_evaluation = {
        **final_evaluation(run, run.data.train_x, run.data.train_y, diverged),
        "images": len(run.data.train_y),
    }
    progress.finished(diverged)
    return metrics_record(run, divergence, test, train_evaluation)
