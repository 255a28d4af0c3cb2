"""The study as the config describes it: which runs exist and what defines each one.

Imported by the workflow at start-up (to check the config and to hand each training job
exactly its own settings) and by the scripts; it holds no Snakemake objects.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from model import (
    apply_init,
    build_optimizer,
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
        kwargs = init.get("kwargs", {})
        _check_kwargs(f"inits.{name}.kwargs", kwargs, init_kwargs_allowed(function), f"torch.nn.init.{function}")
        _try_building(f"inits.{name}.kwargs", kwargs, f"torch.nn.init.{function}", lambda: _dry_init(function, kwargs))
    valid_classes = optimizer_class_names()
    for name, optimizer in config["optimizers"].items():
        class_name = optimizer["class"]
        if class_name not in valid_classes:
            raise ConfigError(
                f"optimizers.{name}.class is '{class_name}', not a torch.optim optimizer. Allowed: {_allowed(valid_classes)}"
            )
        kwargs = optimizer["kwargs"]
        _check_kwargs(f"optimizers.{name}.kwargs", kwargs, optimizer_kwargs_allowed(class_name), f"torch.optim.{class_name}")
        _try_building(
            f"optimizers.{name}.kwargs", kwargs, f"torch.optim.{class_name}", lambda: _dry_optimizer(class_name, kwargs)
        )
    _check_sizes(config)


def _check_kwargs(key: str, kwargs: dict[str, Any], allowed: list[str], owner: str) -> None:
    for argument, value in kwargs.items():
        if argument not in allowed:
            raise ConfigError(
                f"{key}.{argument} (value {json.dumps(value)}) is not an argument {owner} accepts. "
                f"Allowed: {_allowed(allowed) or '(none)'}"
            )


def _dry_init(function: str, kwargs: dict[str, Any]) -> None:
    import torch

    apply_init(torch.nn.Linear(2, 2), function, kwargs, torch.Generator().manual_seed(0))


def _dry_optimizer(class_name: str, kwargs: dict[str, Any]) -> None:
    import torch

    build_optimizer(torch.nn.Linear(2, 2), class_name, kwargs)


def _try_building(key: str, kwargs: dict[str, Any], owner: str, build) -> None:
    """Build the object once on a toy layer, so values PyTorch rejects fail now, not hours into a job."""
    try:
        build()
    except (TypeError, ValueError, RuntimeError) as error:
        raise ConfigError(f"{key} {canonical_json(kwargs)} is rejected by {owner}: {error}") from None


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


def validated_config(config: dict[str, Any], schema_path) -> dict[str, Any]:
    """Check `config` against the schema (filling in defaults, in place) and cross-check it against
    PyTorch; raise ConfigError with one line naming the key, the bad value and what is allowed."""
    from snakemake.utils import validate

    try:
        validate(config, str(schema_path))
    except Exception:  # Snakemake's own message buries the key in a dump of the schema
        raise ConfigError(f"Invalid config: {describe_schema_error(config, schema_path)}") from None
    try:
        check_config(config)
    except ConfigError as error:
        raise ConfigError(f"Invalid config: {error}") from None
    return config


def _key(path) -> str:
    key = ""
    for part in path:
        key += f"[{part}]" if isinstance(part, int) else f".{part}" if key else str(part)
    return key or "(top level)"


def _bounds(rule: dict[str, Any]) -> str:
    """`0 <= value < 1` (or `value > 0`) from a schema's numeric limits."""
    lower = next((f"{rule[k]} {op} " for k, op in (("minimum", "<="), ("exclusiveMinimum", "<")) if k in rule), "")
    upper = next((f" {op} {rule[k]}" for k, op in (("maximum", "<="), ("exclusiveMaximum", "<")) if k in rule), "")
    if lower and not upper:  # one-sided limits read better with the value first
        low, op = lower.split()
        return f"value {op.replace('<', '>')} {low}"
    return f"{lower}value{upper}" if upper else ""


def _types(rule: dict[str, Any]) -> list[str]:
    types = rule.get("type")
    return types if isinstance(types, list) else [types] if types else []


def _kind(rule: dict[str, Any]) -> str:
    types = _types(rule)
    article = {"integer": "an integer", "number": "a number", "string": "a string", "array": "a list",
               "object": "a mapping", "boolean": "true or false", "null": "null"}
    return " or ".join(article.get(t, t) for t in types)


def _allowed_by(rule: dict[str, Any], with_type: bool = True) -> str:
    """What a schema rule allows, in words: its type and limits, its choices, its description."""
    parts = []
    kind, bounds = _kind(rule) if with_type else "", _bounds(rule)
    if kind or bounds:
        parts.append(" with ".join(p for p in (kind, bounds) if p))
    if "enum" in rule:
        parts.append("one of " + ", ".join(map(str, rule["enum"])))
    if "minItems" in rule:
        parts.append(f"at least {rule['minItems']} item(s)")
    if rule.get("uniqueItems"):
        parts.append("each listed once")
    if "description" in rule:
        parts.append(" ".join(rule["description"].split()))
    return "; ".join(parts)


def describe_schema_error(config: dict[str, Any], schema_path) -> str:
    """One readable line for the most relevant schema violation: the key, the bad value, what is allowed."""
    import difflib

    import jsonschema
    import yaml

    with open(schema_path) as handle:
        schema = yaml.safe_load(handle)
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(config))
    if error is None:
        return "the schema check failed, but no violation could be pinpointed"
    key, value = _key(error.absolute_path), error.instance
    rule = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties":
        known = sorted(rule.get("properties", {}))
        unknown = sorted(set(value) - set(known))
        where = "at the top level" if not error.absolute_path else f"under {key}"
        guesses = [difflib.get_close_matches(name, known, n=1) for name in unknown]
        hint = "".join(f" (did you mean '{guess[0]}'?)" for guess in guesses if guess)
        return f"unknown key {', '.join(repr(u) for u in unknown)} {where}{hint}. Allowed keys: {_allowed(known)}"
    if error.validator == "required":
        missing = [name for name in error.validator_value if name not in value]
        return f"{_key([*error.absolute_path, missing[0]])} is missing; it is required"
    if "propertyNames" in error.schema_path:  # the instance is a key of the mapping at `key`
        return f"{key} has an entry named {json.dumps(value)}; allowed: {_allowed_by(rule, with_type=False)}"
    if error.validator == "uniqueItems":
        repeated = sorted({json.dumps(item) for item in value if value.count(item) > 1})
        return f"{key} lists {', '.join(repeated)} more than once; allowed: each value once"
    shown = json.dumps(value, default=str)
    if error.validator in ("minItems", "minProperties") and not value:
        return f"{key} is empty; allowed: {_allowed_by(rule)}"
    allowed = _allowed_by(rule, with_type=error.validator == "type" or bool(_bounds(rule)))
    hint = ""
    if isinstance(value, str) and {"number", "integer"} & set(_types(rule)):
        hint = ". YAML read this as text: write numbers without quotes, floats with a dot (1.0e-3, not 1e-3)"
    return f"{key} is {shown}; allowed: {allowed or error.message}{hint}"
