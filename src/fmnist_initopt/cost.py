"""The cost of one optimizer step per (init, optimizer), measured in isolation (rule step_cost).

Training jobs share the machine, so their wall-clock times measure the scheduler as much as the
method. Here the model and optimizer of every combination are built once, in one process, and their
steps are timed in rounds that visit every combination in turn (the first one rotating from round to
round), so all of them meet the same machine state; each combination's median over the rounds is
its cost. The init changes no arithmetic: it is the placebo, and its spread shows the noise.

`plan` runs at the workflow's start-up, so PyTorch is imported only by the functions that measure.
"""

from __future__ import annotations

import csv
import io
import itertools
import statistics
import time
from collections.abc import Callable, Hashable
from typing import Any

from fmnist_initopt.study import RunSpec, run_spec

# Columns of results/step_cost.csv, in order; cpu_model is the GPU's model when it ran on one.
COLUMNS = ("init", "optimizer", "median_step_seconds", "repeats", "cpu_model")
# What defines a combination's step (RunSpec fields): not the seed, the epochs or the split.
COMBINATION_FIELDS = ("init", "init_function", "init_kwargs", "optimizer", "optimizer_class", "optimizer_kwargs")
# Seed of the synthetic batch every combination trains on.
BATCH_SEED = 0


def plan(config: dict[str, Any]) -> dict[str, Any]:
    """Everything the measurement depends on, from the config: the grid's inits and optimizers as the
    runs define them (numbers spelt one way, as in their RunSpec), the batch size, the precision and
    the device requested, the steps and repeats."""
    grid, training = config["grid"], config["training"]
    combinations = []
    for init, optimizer in itertools.product(grid["inits"], grid["optimizers"]):
        spec = run_spec(config, init, optimizer, grid["seeds"][0]).as_dict()
        combinations.append({key: spec[key] for key in COMBINATION_FIELDS})
    return {
        "combinations": combinations,
        "batch_size": training["batch_size"],
        "precision": training["precision"],
        "device": config["device"],
        "steps": config["step_cost"]["steps"],
        "repeats": config["step_cost"]["repeats"],
    }


def interleaved_medians(
    candidates: dict[Hashable, Callable[[], Any]],
    steps: int,
    repeats: int,
    sync: Callable[[], None] = lambda: None,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[Hashable, float]:
    """Median seconds per call of each candidate: after one warm-up call each, `repeats` rounds
    that call every candidate `steps` times in turn, starting one candidate later each round."""
    for candidate in candidates.values():
        candidate()  # the first call builds kernels and caches: not part of the cost
    keys = list(candidates)
    per_call: dict[Hashable, list[float]] = {key: [] for key in keys}
    for repeat in range(repeats):
        shift = repeat % len(keys)
        for key in keys[shift:] + keys[:shift]:
            sync()
            started = clock()
            for _ in range(steps):
                candidates[key]()
            sync()
            per_call[key].append((clock() - started) / steps)
    return {key: statistics.median(seconds) for key, seconds in per_call.items()}


def measure_step_costs(step_plan: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per combination of `step_plan` (see `plan`), with the columns COLUMNS."""
    import torch

    from fmnist_initopt.environment import device_name, keep_freed_memory, precision_in_use, resolve_device
    from fmnist_initopt.training import model_and_optimizer, optimizer_step, synchronize

    keep_freed_memory()  # as the runs do, so the step costs are theirs
    device = resolve_device(step_plan["device"])
    precision = precision_in_use(step_plan["precision"], device)
    generator = torch.Generator().manual_seed(BATCH_SEED)
    batch_size = step_plan["batch_size"]
    # Images in the normalised range [-1, 1]; the arithmetic of a step does not depend on the values.
    images = (torch.rand(batch_size, 1, 28, 28, generator=generator) * 2 - 1).to(device)
    labels = torch.randint(0, 10, (batch_size,), generator=generator).to(device)

    def training_step(combination: dict[str, Any]) -> Callable[[], Any]:
        spec = RunSpec(**combination, seed=BATCH_SEED, epochs=1, batch_size=batch_size, precision=precision)
        model, optimizer = model_and_optimizer(spec, device)
        model.train()
        return lambda: optimizer_step(model, optimizer, images, labels, precision)

    candidates = {(c["init"], c["optimizer"]): training_step(c) for c in step_plan["combinations"]}
    medians = interleaved_medians(
        candidates, step_plan["steps"], step_plan["repeats"], sync=lambda: synchronize(device)
    )
    return [
        {
            "init": init,
            "optimizer": optimizer,
            "median_step_seconds": seconds,
            "repeats": step_plan["repeats"],
            "cpu_model": device_name(device),
        }
        for (init, optimizer), seconds in medians.items()
    ]


def csv_text(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
