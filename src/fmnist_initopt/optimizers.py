"""The configurable optimizers: any torch.optim class with its keyword arguments."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from fmnist_initopt.model import accepted_kwargs


def optimizer_class_names() -> list[str]:
    return sorted(
        name
        for name, value in vars(torch.optim).items()
        if inspect.isclass(value) and issubclass(value, torch.optim.Optimizer) and value is not torch.optim.Optimizer
    )


def optimizer_kwargs_allowed(class_name: str) -> list[str]:
    return accepted_kwargs(getattr(torch.optim, class_name), skip=("params", "self"))


def build_optimizer(model: nn.Module, class_name: str, kwargs: dict[str, Any]) -> torch.optim.Optimizer:
    """torch.optim.<class_name>(**kwargs), using the class's fused implementation when it has one
    and the config does not choose an implementation itself: the same update in one kernel per step
    instead of several per parameter (measured faster; tests/test_fast_path.py checks it agrees)."""
    prepared = {key: tuple(value) if isinstance(value, list) else value for key, value in kwargs.items()}
    optimizer_class = getattr(torch.optim, class_name)
    if "fused" in inspect.signature(optimizer_class).parameters and not {"fused", "foreach"} & prepared.keys():
        prepared["fused"] = True
    return optimizer_class(model.parameters(), **prepared)


def hyperparameters_in_use(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's settings as it holds them (not as requested), JSON-ready."""
    group = optimizer.param_groups[0]
    used = {}
    for key, value in group.items():
        if key == "params":
            continue
        if isinstance(value, torch.Tensor):
            value = value.item()
        if isinstance(value, tuple):
            value = list(value)
        if value is None or isinstance(value, (bool, int, float, str, list)):
            used[key] = value
    return used
