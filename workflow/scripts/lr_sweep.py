"""The optional learning-rate sweep as the config describes it: which runs exist and what defines each.

Every (init, optimizer, lr, seed) is its own training target. The optimizer's default learning rate
is always part of its sweep, and a sweep point that is exactly a run of the main grid (default lr,
a grid seed) is that run, so nothing is trained twice.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from study import ConfigError, run_spec
from training import RunSpec

# repr() of a positive float: the shortest spelling that reads back as the same float
# (0.001, 3e-05, 1.0), so one learning rate has exactly one file name.
LR_TOKEN_PATTERN = r"[0-9]+(\.[0-9]+)?(e[+-][0-9]+)?"


def lr_token(lr: float) -> str:
    return repr(float(lr))


def enabled(config: dict[str, Any]) -> bool:
    return bool(config.get("lr_sweep", {}).get("enabled", False))


def default_lr(config: dict[str, Any], optimizer: str) -> float:
    return float(config["optimizers"][optimizer]["kwargs"]["lr"])


def default_lrs(config: dict[str, Any]) -> dict[str, float]:
    return {optimizer: default_lr(config, optimizer) for optimizer in config["grid"]["optimizers"]}


def learning_rates(config: dict[str, Any], optimizer: str) -> list[float]:
    """The optimizer's swept learning rates, its default included, in increasing order."""
    listed = config["lr_sweep"]["learning_rates"].get(optimizer, [])
    return sorted({default_lr(config, optimizer), *map(float, listed)})


def check_sweep(config: dict[str, Any]) -> None:
    for optimizer in config["lr_sweep"]["learning_rates"]:
        if optimizer not in config["optimizers"]:
            raise ConfigError(
                f"lr_sweep.learning_rates names '{optimizer}', which is not defined under 'optimizers'. "
                f"Defined: {', '.join(sorted(config['optimizers']))}. Fix: define it or remove it from the sweep."
            )


def sweep_points(config: dict[str, Any]) -> list[tuple[str, str, float, int]]:
    """(init, optimizer, lr, seed) of every sweep run: grid inits and optimizers, the sweep's seeds."""
    grid, seeds = config["grid"], config["lr_sweep"]["seeds"]
    return [
        (init, optimizer, lr, seed)
        for init, optimizer in itertools.product(grid["inits"], grid["optimizers"])
        for lr in learning_rates(config, optimizer)
        for seed in seeds
    ]


def is_grid_run(config: dict[str, Any], optimizer: str, lr: float, seed: int) -> bool:
    return lr == default_lr(config, optimizer) and seed in config["grid"]["seeds"]


def sweep_spec(config: dict[str, Any], init: str, optimizer: str, token: str, seed: int) -> RunSpec:
    """The settings of one sweep run: the grid run's, with the learning rate that `token` spells."""
    matches = [lr for lr in learning_rates(config, optimizer) if lr_token(lr) == token]
    if not matches:
        raise ConfigError(f"lr {token} is not in the sweep of optimizer '{optimizer}' (lr_sweep.learning_rates.{optimizer})")
    spec = run_spec(config, init, optimizer, seed)
    return dataclasses.replace(spec, optimizer_kwargs={**spec.optimizer_kwargs, "lr": matches[0]})
