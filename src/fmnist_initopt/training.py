"""Train one (init, optimizer, seed) run and describe it as the metrics.json dictionary.

The loop keeps the whole data set as tensors on the training device and draws batches by
index from a seeded permutation, so no Python work happens per sample. What it computes is
the brief's loop: cross-entropy, batches of `batch_size` (the last one partial), the epoch
loss as the mean of the batch losses, validation after every epoch, the test set once.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from fmnist_initopt import checkpoint, diagnostics
from fmnist_initopt.data import Splits
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

log = logging.getLogger(__name__)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The data order of an epoch depends only on the run's seed and the epoch number,
    so a resumed run draws exactly the batches an uninterrupted one would."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


@torch.inference_mode()
def evaluate(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over a whole set, in large batches."""
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=images.device)
    correct = torch.zeros((), dtype=torch.int64, device=images.device)
    for start in range(0, len(labels), EVAL_BATCH_SIZE):
        logits = model(images[start : start + EVAL_BATCH_SIZE])
        batch_labels = labels[start : start + EVAL_BATCH_SIZE]
        loss_sum += F.cross_entropy(logits, batch_labels, reduction="sum").to(torch.float64)
        correct += (logits.argmax(dim=1) == batch_labels).sum()
    return loss_sum.item() / len(labels), correct.item() / len(labels)


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
) -> tuple[float, Divergence | None]:
    """One pass over the training set; returns the mean batch loss, or where the loss stopped being finite."""
    model.train()
    order = torch.randperm(len(labels), generator=generator).to(images.device)
    steps = math.ceil(len(labels) / batch_size)
    step_losses = torch.empty(steps, dtype=torch.float32, device=images.device)
    checked = 0
    for step in range(steps):
        index = order[step * batch_size : (step + 1) * batch_size]
        loss = F.cross_entropy(model(images[index]), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step_losses[step] = loss.detach()
        if (step + 1) % DIVERGENCE_CHECK_EVERY == 0 or step + 1 == steps:
            window = step_losses[checked : step + 1]
            finite = torch.isfinite(window)
            if not bool(finite.all()):
                first_bad = checked + int((~finite).nonzero()[0].item())
                return math.nan, Divergence(epoch=-1, step=first_bad + 1, loss=str(float(step_losses[first_bad])))
            checked = step + 1
    return step_losses.to(torch.float64).mean().item(), None


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
    and return its metrics. The checkpoint is written after every epoch and is left in place;
    the caller removes it once the metrics are safely written."""
    model, optimizer = model_and_optimizer(spec, device)
    init_stats = weight_stats(model)
    train_x, train_y = splits.train_x.to(device), splits.train_y.to(device)
    val_x, val_y = splits.val_x.to(device), splits.val_y.to(device)
    probe = diagnostics.probe_batch(train_x, train_y)
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
        log.info("%s: resuming after epoch %d from %s", spec.run_id, len(history["epoch"]), checkpoint_path)

    divergence = None
    for epoch in range(len(history["epoch"]) + 1, spec.epochs + 1):
        started = time.perf_counter()
        train_loss, divergence = train_epoch(
            model, optimizer, train_x, train_y, spec.batch_size, epoch_generator(spec.seed, epoch)
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
        val_loss, val_accuracy = evaluate(model, val_x, val_y)
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
                {"history": history, "init_stats": init_stats, "diagnostics": signal},
            )

    grad_norms.close()
    if divergence is None:
        test_loss, test_accuracy = evaluate(model, splits.test_x.to(device), splits.test_y.to(device))
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
        "hyperparameters": hyperparameters_in_use(optimizer),
        "data": {"validation_source": splits.val_source, **splits.sizes()},
        "history": history,
        "test": test,
        "training_seconds": sum(history["epoch_seconds"]),
        "divergence": None if divergence is None else vars(divergence),
        "init_weight_stats": init_stats,
        "diagnostics": signal,
    }
