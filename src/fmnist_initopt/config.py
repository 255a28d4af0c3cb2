"""The one config validation: the JSON schema first, then every cross-check the schema cannot
express (names against the config and PyTorch, sizes against FashionMNIST, the sweep), each failure
one ConfigError line naming the key, the bad value and what is allowed.

The schema is checked by jsonschema with two stricter types than JSON Schema's own: an "integer" is
never a float (a seed of 1.0 would name a run "seed1.0"), and a "number" is finite (JSON has no NaN
or infinity, YAML has, and every bound in a schema is silently true of NaN). The same validator fills
in the schema's defaults and describes the error.

PyTorch is imported only when a check needs it, so the workflow's start-up stays light. The one
check that needs it (pytorch_check: every defined init on the real model, every optimizer one real
training step) can remember that it passed: Snakemake parses the workflow in every job too, and
importing PyTorch to repeat an identical check costs seconds each time. What it remembers is keyed by
everything the check depends on (pytorch_check_key), so any change repeats it. Only a passed check is
remembered; a failing one runs, and fails, every time.
"""

from __future__ import annotations

import copy
import functools
import glob
import hashlib
import importlib.util
import json
import math
import os
from pathlib import Path
from typing import Any

from fmnist_initopt import study
from fmnist_initopt.atomic import atomic_write_json
from fmnist_initopt.study import canonical_json


class ConfigError(ValueError):
    """A config value that the schema allows but the study cannot use."""


def names_listed(values) -> str:
    return ", ".join(sorted(values))


def check_config(config: dict[str, Any], cache_dir: str | Path | None = None) -> None:
    """Cross-checks the JSON schema cannot express: names that must exist in the config, sizes, the
    sweep, then the inits and optimizers used as the runs use them (pytorch_check). With `cache_dir`,
    a PyTorch check that passed before for the same inputs is not repeated."""
    grid = config["grid"]
    for kind in ("inits", "optimizers"):
        for name in grid[kind]:
            if name not in config[kind]:
                raise ConfigError(
                    f"grid.{kind} names '{name}', which is not defined under '{kind}'. "
                    f"Defined: {names_listed(config[kind])}. Fix: define it under '{kind}' or remove it from grid.{kind}."
                )
    _check_sizes(config)
    _check_sweep(config)
    _check_against_pytorch_once(config, cache_dir)


PASSED_CHECKS_FILE = "pytorch-checks-passed.json"
# Keys kept in the file: enough for every config a user switches between.
PASSED_CHECKS_KEPT = 64
# Modules whose code decides the PyTorch check's outcome besides the training code (study.TRAINING_MODULES).
CHECK_CODE = ("config", "pytorch_check")


def checked_depth(config: dict[str, Any]) -> int:
    """The depth the PyTorch check builds: 1 when the grid trains extra conv layers (a deeper model only
    repeats that layer), else the brief's CNN."""
    return 1 if max(study.depths(config)) > 0 else 0


def visible_accelerators() -> list[str]:
    """What tells a GPU machine from another without importing PyTorch: its device files and the GPUs
    the job may use. Jobs on a cluster's GPU nodes so repeat a check passed on its login node, on their GPU."""
    devices = sorted(glob.glob("/dev/nvidia[0-9]*") + glob.glob("/dev/kfd"))
    return devices + [
        f"{name}={os.environ[name]}" for name in ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES") if name in os.environ
    ]


def pytorch_check_key(config: dict[str, Any]) -> str:
    """Everything the PyTorch check's outcome depends on, hashed, found without importing PyTorch: the
    inits and optimizers, the depth and device it checks on, the PyTorch build, the code it runs."""
    spec = importlib.util.find_spec("torch")
    torch_build = "" if spec is None or spec.origin is None else Path(spec.origin).with_name("version.py").read_text()
    package = Path(__file__).parent
    inputs = {
        "inits": config["inits"],
        "optimizers": config["optimizers"],
        "depth": checked_depth(config),
        "device": config["device"],
        "accelerators": [] if config["device"] == "cpu" else visible_accelerators(),
        "torch": torch_build,
        "training_code": study.training_code_sha256(),
        "check_code": {module: (package / f"{module}.py").read_text() for module in CHECK_CODE},
    }
    return hashlib.sha256(canonical_json(inputs).encode()).hexdigest()


def _passed_keys(path: Path) -> list[str]:
    try:
        keys = json.loads(path.read_text())
    except (OSError, ValueError):  # none yet, or unreadable: the check simply runs
        return []
    return keys if isinstance(keys, list) else []


def _check_against_pytorch_once(config: dict[str, Any], cache_dir: str | Path | None) -> None:
    if cache_dir is None:
        _check_against_pytorch(config)
        return
    path = Path(cache_dir) / PASSED_CHECKS_FILE
    key, passed = pytorch_check_key(config), _passed_keys(path)
    if key in passed:
        return
    _check_against_pytorch(config)
    atomic_write_json(path, [*passed, key][-PASSED_CHECKS_KEPT:])


def _check_against_pytorch(config: dict[str, Any]) -> None:
    from fmnist_initopt.pytorch_check import check_against_pytorch  # imports PyTorch

    check_against_pytorch(config)


FASHION_MNIST_TRAIN_IMAGES = 60_000


def _check_sizes(config: dict[str, Any]) -> None:
    validation, training = config["validation"], config["training"]
    check_split_sizes(
        FASHION_MNIST_TRAIN_IMAGES,
        validation["source"],
        validation["size"],
        training["train_size"],
        training["batch_size"],
    )


def check_split_sizes(
    n_images: int, val_source: str, val_size: int, train_size: int | None, batch_size: int | None = None
) -> None:
    """The split's sizes against the images there are: at start-up against FashionMNIST's, and again
    by the data loader against the file it read (which a test or a user may have made smaller)."""
    held_out = val_size if val_source == "holdout" else 0
    if held_out >= n_images:
        raise ConfigError(
            f"validation.size is {held_out}, which leaves no training images out of {n_images}. "
            f"Allowed: 1 to {n_images - 1}"
        )
    remaining = n_images - held_out
    if train_size is not None and train_size > remaining:
        raise ConfigError(
            f"training.train_size is {train_size} but only {remaining} training images remain after the "
            "validation hold-out. Lower training.train_size or validation.size."
        )
    available = train_size or remaining
    if batch_size is not None and batch_size > available:
        raise ConfigError(
            f"training.batch_size is {batch_size}, larger than the {available} training images. Allowed: 1 to {available}"
        )


def validated_config(config: dict[str, Any], schema_path, cache_dir: str | Path | None = None) -> dict[str, Any]:
    """Check `config` against the schema (filling in defaults, in place) and cross-check it against
    PyTorch (remembering a passed PyTorch check in `cache_dir`, see check_config); raise ConfigError
    with one line naming the key, the bad value and what is allowed."""
    import jsonschema
    import yaml

    with open(schema_path) as handle:  # libyaml's loader where there is one: a tenth of the time
        schema = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    error = jsonschema.exceptions.best_match(_validator_class()(schema).iter_errors(config))
    if error is not None:
        raise ConfigError(f"Invalid config: {describe_schema_error(error)}")
    try:
        check_config(config, cache_dir)
    except ConfigError as error:
        raise ConfigError(f"Invalid config: {error}") from None
    return config


def _is_integer(checker, instance) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


def _is_finite_number(checker, instance) -> bool:
    return _is_integer(checker, instance) or (isinstance(instance, float) and math.isfinite(instance))


@functools.cache
def _validator_class():
    """Draft 2020-12 with the stricter "integer" and "number" (see the module's docstring), filling in
    each missing property's default as it goes (jsonschema's FAQ recipe; a copy, so no two configs
    share one default's list or mapping)."""
    import jsonschema

    base = jsonschema.Draft202012Validator
    check_properties = base.VALIDATORS["properties"]

    def properties_with_defaults(validator, properties, instance, schema):
        if validator.is_type(instance, "object"):
            for name, rule in properties.items():
                if "default" in rule:
                    instance.setdefault(name, copy.deepcopy(rule["default"]))
        yield from check_properties(validator, properties, instance, schema)

    types = base.TYPE_CHECKER.redefine_many({"integer": _is_integer, "number": _is_finite_number})
    return jsonschema.validators.extend(base, {"properties": properties_with_defaults}, type_checker=types)


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
    article = {
        "integer": "an integer",
        "number": "a finite number",
        "string": "a string",
        "array": "a list",
        "object": "a mapping",
        "boolean": "true or false",
        "null": "null",
    }
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


def describe_schema_error(error) -> str:
    """One readable line for a jsonschema ValidationError: the key, the bad value, what is allowed."""
    import difflib

    key, value = _key(error.absolute_path), error.instance
    rule = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties":
        known = sorted(rule.get("properties", {}))
        unknown = sorted(set(value) - set(known))
        where = "at the top level" if not error.absolute_path else f"under {key}"
        guesses = [difflib.get_close_matches(name, known, n=1) for name in unknown]
        hint = "".join(f" (did you mean '{guess[0]}'?)" for guess in guesses if guess)
        return f"unknown key {', '.join(repr(u) for u in unknown)} {where}{hint}. Allowed keys: {names_listed(known)}"
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
    if isinstance(value, float) and math.isfinite(value) and "integer" in _types(rule):
        hint = ". Write whole numbers without a decimal point (1, not 1.0)"
    return f"{key} is {shown}; allowed: {allowed or error.message}{hint}"


def _check_sweep(config: dict[str, Any]) -> None:
    for optimizer in config["lr_sweep"]["learning_rates"]:
        if optimizer not in config["optimizers"]:
            raise ConfigError(
                f"lr_sweep.learning_rates names '{optimizer}', which is not defined under 'optimizers'. "
                f"Defined: {', '.join(sorted(config['optimizers']))}. Fix: define it or remove it from the sweep."
            )
