"""The study as the config describes it: which runs exist and what defines each one.

Imported by the workflow at start-up (to hand each training job exactly its own settings) and by
the entry scripts; it holds no Snakemake objects and does not import the training loop.

The optional learning-rate sweep lives here too: every (init, optimizer, lr, seed) is its own
training target, the optimizer's default learning rate is always part of its sweep, and a sweep
point that is exactly a run of the main grid (default lr, a grid seed) is that run.

A run's identity also holds the checksums of the data it trains on (`RunSpec.data`): other data is
another run, while re-fetching or re-decoding the same bytes changes nothing. What a run is computed
with besides its spec, the training code (`TRAINING_MODULES`, hashed by `training_code_sha256`), is
bound to its checkpoints (see checkpoint.py) and named to Snakemake as the train rule's code inputs.

The model's depth is an axis of the grid too: `model.extra_conv_layers` lists the depths N (extra 3x3
conv + ReLU layers, see model.CNN) and every (init, optimizer, depth, seed) is its own run. Depth 0 is
the brief's CNN: its runs keep the spec, the id and the directory they had before depth existed (the
model settings appear in them only when they differ from the brief's), so existing results stay valid.
The learning-rate sweep tunes the brief's CNN (depth 0) only.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The package modules whose code shapes what a training job computes: the workflow names them as the
# train rule's inputs (so editing one retrains), and a checkpoint is bound to their hash (so a resumed
# run never mixes epochs from different code).
TRAINING_MODULES = (
    "training",
    "checkpoint",
    "diagnostics",
    "model",
    "optimizers",
    "data",
    "study",
    "environment",
)


@functools.cache
def training_code_sha256() -> str:
    """One SHA-256 over the source of TRAINING_MODULES as this process imported them."""
    digest = hashlib.sha256()
    package = Path(__file__).parent
    for module in sorted(TRAINING_MODULES):
        digest.update(f"{module}.py\0".encode())
        digest.update((package / f"{module}.py").read_bytes())
    return digest.hexdigest()


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
    extra_conv_layers: int = 0
    # fp32 or bf16 (autocast): a different precision is a different result, hence part of the identity
    precision: str = "fp32"
    # {raw file name: SHA-256 of its decompressed bytes} (the config's data.sha256): other data, other run
    data: dict[str, str] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return run_id(self.init, self.optimizer, self.extra_conv_layers, self.seed)

    def as_dict(self) -> dict[str, Any]:
        spec = {
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
            "data": self.data,
        }
        # Only a non-default model is spelled out: the brief's CNN keeps the spec (and the fingerprint,
        # and so its finished runs and checkpoints) it had before the model had settings.
        if self.extra_conv_layers:
            spec["model"] = {"extra_conv_layers": self.extra_conv_layers}
        return spec

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


def run_spec(config: dict[str, Any], init: str, optimizer: str, seed: int, depth: int = 0) -> RunSpec:
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
        extra_conv_layers=int(depth),
        precision=training["precision"],
        data=dict(config["data"]["sha256"]),
    )


def canonical_json(value: Any) -> str:
    """One spelling per value: sorted keys, numbers as Python reads them (0.001 == 1.0e-3)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def run_spec_from_json(text: str) -> RunSpec:
    fields = json.loads(text)
    model = fields.pop("model", {})
    return RunSpec(**fields, **model)


def grid_runs(config: dict[str, Any]) -> list[tuple[str, str, int]]:
    """(init, optimizer, seed) of the grid; each is trained at every depth of `depths(config)`."""
    grid = config["grid"]
    return list(itertools.product(grid["inits"], grid["optimizers"], grid["seeds"]))


# --- The depth axis --------------------------------------------------------------------------------
# A run's directory and id carry "_depth<N>" after the optimizer when N > 0, nothing at depth 0.
MODEL_SUFFIX_PATTERN = r"(_depth[1-9][0-9]*)?"


def depths(config: dict[str, Any]) -> list[int]:
    """The depths the grid trains (`model.extra_conv_layers`), in increasing order."""
    return sorted(int(depth) for depth in config["model"]["extra_conv_layers"])


def main_depth(config: dict[str, Any]) -> int:
    """The depth the main report analyses: the brief's CNN when the grid has it, else the shallowest."""
    listed = depths(config)
    return 0 if 0 in listed else listed[0]


def model_suffix(depth: int) -> str:
    return f"_depth{int(depth)}" if depth else ""


def depth_of_suffix(suffix: str) -> int:
    match = re.fullmatch(MODEL_SUFFIX_PATTERN, suffix)
    if match is None:
        raise ValueError(f"'{suffix}' is not a model suffix: expected nothing or _depth<N> with N >= 1")
    return int(suffix[len("_depth") :]) if suffix else 0


def run_id(init: str, optimizer: str, depth: int, seed: int) -> str:
    return f"{init}_{optimizer}{model_suffix(depth)}_seed{seed}"


def depth_of(metrics: dict[str, Any]) -> int:
    """A run's depth from its metrics.json; runs written before depth existed are the brief's CNN."""
    return int(metrics["run"].get("depth", 0))


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
    """Whether a (depth-0) sweep point is a run the grid trains anyway."""
    return lr == default_lr(config, optimizer) and seed in config["grid"]["seeds"] and 0 in depths(config)


def sweep_spec(config: dict[str, Any], init: str, optimizer: str, token: str, seed: int) -> RunSpec:
    """The settings of one sweep run: the grid run's, with the learning rate that `token` spells."""
    matches = [lr for lr in learning_rates(config, optimizer) if lr_token(lr) == token]
    if not matches:
        raise UnknownSweepPoint(
            f"lr {token} is not in the sweep of optimizer '{optimizer}' (lr_sweep.learning_rates.{optimizer})"
        )
    spec = run_spec(config, init, optimizer, seed)
    return dataclasses.replace(spec, optimizer_kwargs={**spec.optimizer_kwargs, "lr": matches[0]})
