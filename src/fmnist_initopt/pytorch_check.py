"""The config against the installed PyTorch, done as a run does it: every defined init initialises the
real model (model.build_model) and every defined optimizer takes one real training step on it
(training.model_and_optimizer, training.optimizer_step) on the device a run started on this machine
would use. So whatever would fail in a training job fails here, at start-up: unknown names and
arguments, values PyTorch rejects, 2-D-only inits (sparse_) on the 4-D convolution weights, optimizers
whose step() needs a closure (LBFGS) or sparse gradients (SparseAdam), flags that only work on some
devices. Any exception PyTorch raises becomes one ConfigError line naming the key.

The keyword arguments are those a run receives (study.run_spec reads them), and the model has every
kind of layer the study's runs have: the brief's CNN, plus one extra 3x3 convolution when the grid has
depths above 0 (deeper models only repeat that layer). config.py remembers a passed check.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import Any

import torch

from fmnist_initopt.config import ConfigError, checked_depth, names_listed
from fmnist_initopt.data import normalise
from fmnist_initopt.environment import DeviceError, resolve_device
from fmnist_initopt.model import build_model, init_function_names, init_kwargs_allowed
from fmnist_initopt.optimizers import optimizer_class_names, optimizer_kwargs_allowed
from fmnist_initopt.study import RunSpec, run_spec
from fmnist_initopt.training import model_and_optimizer, optimizer_step

# The one training step: two images (no layer of the model needs more) and their labels.
STEP_IMAGES = 2
# The key of what an init or optimizer is, and where PyTorch keeps it.
OWNER_KEY = {"inits": "function", "optimizers": "class"}
OWNER_MODULE = {"inits": "torch.nn.init", "optimizers": "torch.optim"}
INIT_ALLOWED = (
    "a torch.nn.init function and arguments that initialise every Conv2d (4-D) and Linear (2-D) weight to finite values"
)
OPTIMIZER_ALLOWED = (
    "a torch.optim class and arguments whose step() needs no closure and takes dense gradients on {device}"
)


def check_against_pytorch(config: dict[str, Any]) -> None:
    """Every defined init and optimizer by name, by argument, then by use on the model."""
    _check_names(config)
    depth = checked_depth(config)
    model = "the brief's CNN" + (" with an extra 3x3 conv layer" if depth else "")
    for name in config["inits"]:
        _check_by_use(config, depth, "inits", name, _initialise, f"to initialise {model}", INIT_ALLOWED)
    device = check_device(config["device"])
    step, done = partial(_train_one_step, device=device), f"one training step of {model} on {device.type}"
    for name in config["optimizers"]:
        _check_by_use(config, depth, "optimizers", name, step, done, OPTIMIZER_ALLOWED.format(device=device.type))


def check_device(requested: str) -> torch.device:
    """The device a run started on this machine would use. Where the config asks for a GPU this machine
    lacks (a cluster's login node), the CPU: the jobs repeat the check on their own machine, whose
    GPUs are part of what a passed check is remembered by (see config.pytorch_check_key)."""
    try:
        return resolve_device(requested)
    except DeviceError:
        return torch.device("cpu")


def _check_names(config: dict[str, Any]) -> None:
    functions = init_function_names()
    for name, init in config["inits"].items():
        function = init["function"]
        if function not in functions:
            raise ConfigError(
                f"inits.{name}.function is '{function}', not a torch.nn.init function. Allowed: {names_listed(functions)}"
            )
        allowed = init_kwargs_allowed(function)
        _check_arguments(f"inits.{name}.kwargs", init.get("kwargs", {}), allowed, f"torch.nn.init.{function}")
    classes = optimizer_class_names()
    for name, optimizer in config["optimizers"].items():
        class_name = optimizer["class"]
        if class_name not in classes:
            raise ConfigError(
                f"optimizers.{name}.class is '{class_name}', not a torch.optim optimizer. Allowed: {names_listed(classes)}"
            )
        allowed = optimizer_kwargs_allowed(class_name)
        _check_arguments(f"optimizers.{name}.kwargs", optimizer["kwargs"], allowed, f"torch.optim.{class_name}")


def _check_arguments(key: str, kwargs: dict[str, Any], allowed: list[str], owner: str) -> None:
    for argument, value in kwargs.items():
        if argument not in allowed:
            raise ConfigError(
                f"{key}.{argument} (value {json.dumps(value)}) is not an argument {owner} accepts. "
                f"Allowed: {names_listed(allowed) or '(none)'}"
            )


def _spec(config: dict[str, Any], kind: str, name: str, definition: dict[str, Any], depth: int) -> RunSpec:
    """The spec of a run using `definition` as `kind`.`name` (and the first defined init or optimizer)."""
    changed = {**config, kind: {**config[kind], name: definition}}
    init = name if kind == "inits" else next(iter(config["inits"]))
    optimizer = name if kind == "optimizers" else next(iter(config["optimizers"]))
    return run_spec(changed, init, optimizer, seed=0, depth=depth)


def _initialise(spec: RunSpec) -> None:
    model = build_model(spec.init_function, spec.init_kwargs, spec.seed, spec.extra_conv_layers)
    for name, weight in model.named_parameters():
        if not bool(torch.isfinite(weight).all()):
            raise ValueError(f"it leaves non-finite values in {name}")


def _train_one_step(spec: RunSpec, device: torch.device) -> None:
    """In fp32 whatever the run's precision: bf16 changes how the forward pass computes, not what the
    optimizer is handed (float32 parameters and gradients either way)."""
    model, optimizer = model_and_optimizer(spec, device)
    pixels = torch.randint(0, 256, (STEP_IMAGES, 1, 28, 28), dtype=torch.uint8, device=device)
    labels = torch.arange(STEP_IMAGES, device=device)
    optimizer_step(model, optimizer, normalise(pixels), labels, "fp32")


def _check_by_use(
    config: dict[str, Any], depth: int, kind: str, name: str, use: Callable[[RunSpec], None], done: str, allowed: str
) -> None:
    """Use `kind`.`name` as a run would; if that fails, name the keyword argument whose removal alone
    makes it work, else the function or class itself."""
    definition = config[kind][name]
    error = _failure_of(use, _spec(config, kind, name, definition, depth))
    if error is None:
        return
    what, kwargs = OWNER_KEY[kind], definition.get("kwargs", {})
    key, value = f"{kind}.{name}.{what}", definition[what]
    for argument in kwargs:
        without = {**definition, "kwargs": {k: v for k, v in kwargs.items() if k != argument}}
        if _failure_of(use, _spec(config, kind, name, without, depth)) is None:
            key, value = f"{kind}.{name}.kwargs.{argument}", kwargs[argument]
            break
    owner = f"{OWNER_MODULE[kind]}.{definition[what]} with kwargs {json.dumps(kwargs)}"
    message = " ".join(str(error).split()).rstrip(".") or "(no message)"
    raise ConfigError(
        f"{key} is {json.dumps(value)}: {owner} fails {done}: {type(error).__name__}: {message}. Allowed: {allowed}"
    )


def _failure_of(use: Callable[[RunSpec], None], spec: RunSpec) -> Exception | None:
    try:
        use(spec)
    except Exception as error:  # whatever PyTorch raises is the config's problem to report
        return error
    return None
