"""The brief's CNN and the configurable weight initialisations."""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# The init that keeps PyTorch's own layer initialisation.
DEFAULT_INIT = "default"
INITIALISED_LAYERS = (nn.Conv2d, nn.Linear)
# In-place initialisers that need extra arguments or only fit some layer shapes.
_NOT_INIT_FUNCTIONS = {"zeros_", "ones_", "constant_", "dirac_", "eye_"}


class CNN(nn.Module):
    """The lab brief's network: two conv+pool blocks, then two fully connected layers.

    `extra_conv_layers` N > 0 deepens it for the depth study: N more 3x3 convolutions (64 -> 64 channels,
    padding 1) each followed by a ReLU, without normalisation, after the second block's pooling and before
    fc1. There, at 7x7, each costs half of conv2's multiply-adds (at 14x14 it would cost twice conv2's), and
    fc1's input stays 64 * 7 * 7, so depth is the only thing that changes. They are named conv3, conv4, ...
    and registered between conv2 and fc1, so every per-layer listing runs input to output.
    With N = 0 the module, its parameters, their initial values and its outputs are the brief's, bit for bit.
    """

    def __init__(self, extra_conv_layers: int = 0) -> None:
        super().__init__()
        if extra_conv_layers < 0:
            raise ValueError(f"extra_conv_layers must be 0 or more, got {extra_conv_layers}")
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        # Built before fc1 and fc2 so that with none of them PyTorch's own init draws exactly what it drew before.
        self.extra_convs = [f"conv{index}" for index in range(3, 3 + extra_conv_layers)]
        for name in self.extra_convs:
            self.add_module(name, nn.Conv2d(64, 64, kernel_size=3, padding=1))
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The brief writes pool(relu(conv(x))). Max pooling commutes with ReLU (both are monotone),
        # so relu(pool(...)) is the same function with the same gradients, and ReLU touches 4x fewer values.
        x = F.relu(self.pool(self.conv1(x)))
        x = F.relu(self.pool(self.conv2(x)))
        for name in self.extra_convs:
            x = F.relu(getattr(self, name)(x))
        x = x.flatten(1)
        x = F.relu(self.fc1(x))
        return self.fc2(x)

    def describe(self) -> str:
        """The layers in forward order, read off the modules: e.g. for metrics.json and the report."""
        pooled, last = {"conv1", "conv2"}, "fc2"
        parts = []
        for name, module in self.named_children():
            if isinstance(module, nn.Conv2d):
                height, width = module.kernel_size
                text = f"{name} conv {module.in_channels}->{module.out_channels} {height}x{width} + ReLU"
                parts.append(text + (" + maxpool 2" if name in pooled else ""))
            elif isinstance(module, nn.Linear):
                text = f"{name} linear {module.in_features}->{module.out_features}"
                parts.append(text + ("" if name == last else " + ReLU"))
        return " -> ".join(parts)


def parameter_count(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def model_record(model: CNN) -> dict[str, Any]:
    """What metrics.json records about the network a run trained."""
    return {
        "extra_conv_layers": len(model.extra_convs),
        "description": model.describe(),
        "parameters": parameter_count(model),
    }


def init_function_names() -> list[str]:
    """torch.nn.init functions that can initialise a weight tensor in place, plus "default"."""
    names = [
        name
        for name, value in vars(nn.init).items()
        if name.endswith("_") and not name.startswith("_") and callable(value) and name not in _NOT_INIT_FUNCTIONS
    ]
    return sorted(names) + [DEFAULT_INIT]


def accepted_kwargs(callable_: Any, skip: tuple[str, ...]) -> list[str]:
    return [name for name in inspect.signature(callable_).parameters if name not in skip]


def init_kwargs_allowed(function: str) -> list[str]:
    if function == DEFAULT_INIT:
        return []
    return accepted_kwargs(getattr(nn.init, function), skip=("tensor", "generator"))


def apply_init(model: nn.Module, function: str, kwargs: dict[str, Any], generator: torch.Generator) -> nn.Module:
    """Initialise Conv2d/Linear weights with torch.nn.init.<function>(**kwargs); zero their biases."""
    if function == DEFAULT_INIT:
        return model
    init_fn = getattr(nn.init, function)
    for module in model.modules():
        if isinstance(module, INITIALISED_LAYERS):
            init_fn(module.weight, **kwargs, generator=generator)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


def build_model(init_function: str, init_kwargs: dict[str, Any], seed: int, extra_conv_layers: int = 0) -> CNN:
    """A CNN whose initial weights depend only on the init, the seed and the depth."""
    torch.manual_seed(seed)  # PyTorch's own layer init draws from the global generator
    model = CNN(extra_conv_layers)
    return apply_init(model, init_function, init_kwargs, torch.Generator().manual_seed(seed))


def weight_stats(model: nn.Module, bins: int = 60) -> list[dict[str, Any]]:
    """Per-layer weight mean/std/fans and a histogram: the brief's Task 1 check, kept for the report."""
    stats = []
    for name, module in model.named_modules():
        if not isinstance(module, INITIALISED_LAYERS):
            continue
        weight = module.weight.detach().cpu().to(torch.float64)
        fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(weight)
        low, high = weight.min().item(), weight.max().item()
        counts = torch.histc(weight, bins=bins, min=low, max=high)
        stats.append(
            {
                "layer": name,
                "shape": list(weight.shape),
                "fan_in": fan_in,
                "fan_out": fan_out,
                "mean": weight.mean().item(),
                "std": weight.std().item(),
                "bias_abs_max": module.bias.detach().abs().max().item() if module.bias is not None else None,
                "histogram": {
                    "edges": torch.linspace(low, high, bins + 1).tolist(),
                    "counts": [int(c) for c in counts.tolist()],
                },
            }
        )
    return stats
