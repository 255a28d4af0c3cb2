"""Train one (init, optimizer, seed) run and describe it as the metrics.json dictionary.

The loop keeps the whole data set as tensors on the training device and draws batches by
index from a seeded permutation, so no Python work happens per sample. What it computes is
the brief's loop: cross-entropy, batches of `batch_size` (the last one partial), the epoch
loss as the mean of the batch losses, validation after every epoch, the test set once.
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


def train_run(
    spec: RunSpec,
    splits: Splits,
    device: torch.device,
    checkpoint_path: Path | None = None,
) -> dict[str, Any]:
    """Train `spec` to the end (resuming from `checkpoint_path` if it holds a finished epoch)
    and return its metrics. The checkpoint is written after every epoch and is left in place: the
    workflow removes it once Snakemake has succeeded, so that a job rerun meanwhile (a requeued group)
    finds the finished run and only evaluates it again."""
    keep_freed_memory()
    cost = RunCost(StepTimer(device))
    precision = precision_in_use(spec.precision, device)
    model, optimizer = model_and_optimizer(spec, device)
    init_stats = weight_stats(model)
    train_x, train_y = splits.train_x.to(device), splits.train_y.to(device)
    val_x, val_y = splits.val_x.to(device), splits.val_y.to(device)
    probe_pixels, probe_labels = diagnostics.probe_batch(train_x, train_y)
    probe = normalise(probe_pixels), probe_labels
    signal = diagnostics.new_record(model, probe)
    grad_norms = diagnostics.GradNormTracker(optimizer)

    history: dict[str, list] = {"epoch": [], "train_loss": [], "val_loss": [], "val_accuracy": [], "epoch_seconds": []}
    saved = checkpoint.load(checkpoint_path, spec, device)
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["torch_rng"].cpu())
        history = saved["history"]
        init_stats = saved["init_stats"]
        signal = saved["diagnostics"]
        cost.resume(saved["cost"])
        log.info("%s: resuming after epoch %d from %s", spec.run_id, len(history["epoch"]), checkpoint_path)

    cost.seconds_before_first_step = seconds_since_process_start()
    log.info(
        "%s: training in %s on %s with %d thread(s), %.2f s after the process started (%.2f s of CPU time)",
        spec.run_id,
        precision,
        device,
        torch.get_num_threads(),
        cost.seconds_before_first_step or math.nan,
        time.process_time(),
    )
    divergence = None
    for epoch in range(len(history["epoch"]) + 1, spec.epochs + 1):
        started = time.perf_counter()
        train_loss, divergence = train_epoch(
            model,
            optimizer,
            train_x,
            train_y,
            spec.batch_size,
            epoch_generator(spec.seed, epoch),
            precision,
            cost.timer,
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
            break
        val_loss, val_accuracy = evaluate(model, val_x, val_y, precision)
        seconds = time.perf_counter() - started
        diagnostics.record_epoch(signal, epoch, model, probe, grad_norms)
        for key, value in zip(history, (epoch, train_loss, val_loss, val_accuracy, seconds)):
            history[key].append(value)
        log.info(
            "%s: epoch %d/%d train_loss %.4f val_loss %.4f val_accuracy %.4f (%.1f s)",
            spec.run_id,
            epoch,
            spec.epochs,
            train_loss,
            val_loss,
            val_accuracy,
            seconds,
        )
        if checkpoint_path is not None:
            checkpoint.save(
                checkpoint_path,
                spec,
                model,
                optimizer,
                {"history": history, "init_stats": init_stats, "diagnostics": signal, "cost": cost.state()},
            )

    grad_norms.close()
    if divergence is None:
        test_loss, test_accuracy = evaluate(model, splits.test_x.to(device), splits.test_y.to(device), precision)
        test = {"loss": test_loss, "accuracy": test_accuracy}
        log.info("%s: test accuracy %.4f, test loss %.4f", spec.run_id, test_accuracy, test_loss)
    else:
        test = {"loss": None, "accuracy": None}
    return {
        "schema_version": METRICS_SCHEMA_VERSION,
        "run": {
            "id": spec.run_id,
            "init": spec.init,
            "optimizer": spec.optimizer,
            "depth": spec.extra_conv_layers,
            "seed": spec.seed,
        },
        "model": model_record(model),
        "status": "completed" if divergence is None else "diverged",
        "spec": spec.as_dict(),
        "precision": precision,
        "hyperparameters": hyperparameters_in_use(optimizer),
        "data": {"validation_source": splits.val_source, **splits.sizes()},
        "history": history,
        "test": test,
        "training_seconds": sum(history["epoch_seconds"]),
        "divergence": None if divergence is None else vars(divergence),
        "init_weight_stats": init_stats,
        "diagnostics": signal,
        "cost": cost.record(),
    }
