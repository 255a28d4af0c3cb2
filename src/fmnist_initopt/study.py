"""The study as the config describes it: which runs exist and what defines each one.

Imported by the workflow at start-up (to hand each training job exactly its own settings) and by
the entry scripts; it holds no Snakemake objects and does not import the training loop.

The optional learning-rate sweep lives here too: every (init, optimizer, lr, seed) is its own
training target, the optimizer's default learning rate is always part of its sweep, and a sweep
point that is exactly a run of the main grid (default lr, a grid seed) is that run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from typing import Any


class UnknownSweepPoint(ValueError):
    """A sweep target whose learning rate the config does not sweep."""


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines a run's result; nothing about where or how fast it runs."""

    init: str
    init_function: str
    init_kwargs: dict[str, Any]
    optimizer: str
    optimizer_class: str
    optimizer_kwargs: dict[str, Any]
    seed: int
    epochs: int
    batch_size: int
    split: dict[str, Any] = field(default_factory=dict)
    # fp32 or bf16 (autocast): a different precision is a different result, hence part of the identity
    precision: str = "fp32"

    @property
    def run_id(self) -> str:
        return f"{self.init}_{self.optimizer}_seed{self.seed}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "init": self.init,
            "init_function": self.init_function,
            "init_kwargs": self.init_kwargs,
            "optimizer": self.optimizer,
            "optimizer_class": self.optimizer_class,
            "optimizer_kwargs": self.optimizer_kwargs,
            "seed": self.seed,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "split": self.split,
            "precision": self.precision,
        }

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()


def _numbers_as_floats(value: Any) -> Any:
    """Keyword arguments with every number as a float, so `lr: 1` and `lr: 1.0` are one setting."""
    if isinstance(value, dict):
        return {key: _numbers_as_floats(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_numbers_as_floats(item) for item in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def run_spec(config: dict[str, Any], init: str, optimizer: str, seed: int) -> RunSpec:
    init_def, optimizer_def = config["inits"][init], config["optimizers"][optimizer]
    training, validation = config["training"], config["validation"]
    return RunSpec(
        init=init,
        init_function=init_def["function"],
        init_kwargs=_numbers_as_floats(init_def.get("kwargs", {})),
        optimizer=optimizer,
        optimizer_class=optimizer_def["class"],
        optimizer_kwargs=_numbers_as_floats(optimizer_def["kwargs"]),
        seed=int(seed),
        epochs=int(training["epochs"]),
        batch_size=int(training["batch_size"]),
        split={
            "val_source": validation["source"],
            # the hold-out size means nothing when the test set validates
            "val_size": int(validation["size"]) if validation["source"] == "holdout" else None,
            "split_seed": int(validation["split_seed"]),
            "train_size": _int_or_none(training["train_size"]),
        },
        precision=training["precision"],
    )


def canonical_json(value: Any) -> str:
    """One spelling per value: sorted keys, numbers as Python reads them (0.001 == 1.0e-3)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def run_spec_from_json(text: str) -> RunSpec:
    return RunSpec(**json.loads(text))


def grid_runs(config: dict[str, Any]) -> list[tuple[str, str, int]]:
    grid = config["grid"]
    return list(itertools.product(grid["inits"], grid["optimizers"], grid["seeds"]))


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
        raise UnknownSweepPoint(
            f"lr {token} is not in the sweep of optimizer '{optimizer}' (lr_sweep.learning_rates.{optimizer})"
        )
    spec = run_spec(config, init, optimizer, seed)
    return dataclasses.replace(spec, optimizer_kwargs={**spec.optimizer_kwargs, "lr": matches[0]})
