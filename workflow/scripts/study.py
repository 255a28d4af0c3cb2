"""The study as the config describes it: which runs exist and what defines each one.

Imported by the workflow at start-up (to check the config and to hand each training job
exactly its own settings) and by the scripts; it holds no Snakemake objects.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from model import (
    init_function_names,
    init_kwargs_allowed,
    optimizer_class_names,
    optimizer_kwargs_allowed,
)
from training import RunSpec


class ConfigError(ValueError):
    """A config value that the schema allows but the study cannot use."""


def _allowed(values) -> str:
    return ", ".join(sorted(values))


def check_config(config: dict[str, Any]) -> None:
    """Cross-checks the JSON schema cannot express: names that must exist in the config or in PyTorch."""
    grid = config["grid"]
    for kind in ("inits", "optimizers"):
        for name in grid[kind]:
            if name not in config[kind]:
                raise ConfigError(
                    f"grid.{kind} names '{name}', which is not defined under '{kind}'. "
                    f"Defined: {_allowed(config[kind])}. Fix: define it under '{kind}' or remove it from grid.{kind}."
                )
    valid_functions = init_function_names()
    for name, init in config["inits"].items():
        function = init["function"]
        if function not in valid_functions:
            raise ConfigError(
                f"inits.{name}.function is '{function}', not a torch.nn.init function. Allowed: {_allowed(valid_functions)}"
            )
        _check_kwargs(f"inits.{name}.kwargs", init.get("kwargs", {}), init_kwargs_allowed(function))
    valid_classes = optimizer_class_names()
    for name, optimizer in config["optimizers"].items():
        class_name = optimizer["class"]
        if class_name not in valid_classes:
            raise ConfigError(
                f"optimizers.{name}.class is '{class_name}', not a torch.optim optimizer. Allowed: {_allowed(valid_classes)}"
            )
        _check_kwargs(f"optimizers.{name}.kwargs", optimizer["kwargs"], optimizer_kwargs_allowed(class_name))
    _check_sizes(config)


def _check_kwargs(key: str, kwargs: dict[str, Any], allowed: list[str]) -> None:
    for argument in kwargs:
        if argument not in allowed:
            raise ConfigError(f"{key}.{argument} is not an argument it accepts. Allowed: {_allowed(allowed) or '(none)'}")


FASHION_MNIST_TRAIN_IMAGES = 60_000


def _check_sizes(config: dict[str, Any]) -> None:
    validation, training = config["validation"], config["training"]
    held_out = validation["size"] if validation["source"] == "holdout" else 0
    if held_out >= FASHION_MNIST_TRAIN_IMAGES:
        raise ConfigError(
            f"validation.size is {held_out}, which leaves no training images out of "
            f"{FASHION_MNIST_TRAIN_IMAGES}. Allowed: 1 to {FASHION_MNIST_TRAIN_IMAGES - 1}"
        )
    available = training["train_size"] or (FASHION_MNIST_TRAIN_IMAGES - held_out)
    if training["train_size"] is not None and training["train_size"] > FASHION_MNIST_TRAIN_IMAGES - held_out:
        raise ConfigError(
            f"training.train_size is {training['train_size']} but only {FASHION_MNIST_TRAIN_IMAGES - held_out} "
            "training images remain after the validation hold-out. Lower training.train_size or validation.size."
        )
    if training["batch_size"] > available:
        raise ConfigError(
            f"training.batch_size is {training['batch_size']}, larger than the {available} training images. "
            f"Allowed: 1 to {available}"
        )


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
    )


def canonical_json(value: Any) -> str:
    """One spelling per value: sorted keys, numbers as Python reads them (0.001 == 1.0e-3)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def run_spec_from_json(text: str) -> RunSpec:
    return RunSpec(**json.loads(text))


def grid_runs(config: dict[str, Any]) -> list[tuple[str, str, int]]:
    grid = config["grid"]
    return list(itertools.product(grid["inits"], grid["optimizers"], grid["seeds"]))


def describe_schema_error(config: dict[str, Any], schema_path) -> str:
    """One readable line for the most relevant schema violation: the key, the bad value, what is allowed."""
    import jsonschema
    import yaml

    with open(schema_path) as handle:
        schema = yaml.safe_load(handle)
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(config))
    if error is None:
        return "Invalid config (the schema check failed, but no violation could be pinpointed)"
    key = ".".join(str(part) for part in error.absolute_path) or "(top level)"
    rule = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties":
        allowed = f"Allowed keys here: {_allowed(rule.get('properties', {}))}" if rule.get("properties") else ""
        return f"Invalid config at {key}: {error.message}. {allowed}".strip()
    hints = []
    if "description" in rule:
        hints.append(rule["description"])
    if "enum" in rule:
        hints.append(f"allowed: {', '.join(map(str, rule['enum']))}")
    if isinstance(error.instance, str) and rule.get("type") in ("number", "integer"):
        hints.append("YAML read this as text: write floats with a dot and a signed exponent, e.g. 1.0e-3")
    hint = f" ({'; '.join(hints)})" if hints else ""
    return f"Invalid config at {key}: {error.message}{hint}"
