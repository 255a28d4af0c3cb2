"""Inits and optimizers are defined in YAML, not in code (issue 4)."""

import copy

import pytest
import torch
import yaml
from conftest import REPO

from fmnist_initopt.config import ConfigError, check_config
from fmnist_initopt.model import build_model, weight_stats
from fmnist_initopt.optimizers import build_optimizer, hyperparameters_in_use
from fmnist_initopt.study import run_spec

REPO_CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
SCHEMA_DEFAULTS = {
    "training": {"epochs": 10, "batch_size": 64, "train_size": None},
    "validation": {"source": "holdout", "size": 10000, "split_seed": 0},
}
PINNED_SHA256 = SCHEMA["properties"]["data"]["properties"]["sha256"]["default"]


def full_config(**changes):
    config = copy.deepcopy({**SCHEMA_DEFAULTS, **REPO_CONFIG})
    config["data"].setdefault("sha256", dict(PINNED_SHA256))
    config.update(changes)
    return config


@pytest.mark.parametrize("init", sorted(REPO_CONFIG["inits"]))
def test_every_init_defined_in_the_config_builds_a_model(init):
    spec = run_spec(full_config(), init, "adam", 0)
    model = build_model(spec.init_function, spec.init_kwargs, spec.seed)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    default = weight_stats(build_model("default", {}, 0))
    if init != "default":
        assert weight_stats(model) != default


@pytest.mark.parametrize("optimizer", sorted(REPO_CONFIG["optimizers"]))
def test_every_optimizer_defined_in_the_config_uses_its_yaml_settings(optimizer):
    spec = run_spec(full_config(), "he", optimizer, 0)
    model = build_model("default", {}, 0)
    used = hyperparameters_in_use(build_optimizer(model, spec.optimizer_class, spec.optimizer_kwargs))
    for key, value in REPO_CONFIG["optimizers"][optimizer]["kwargs"].items():
        assert used[key] == pytest.approx(value)


def test_the_brief_names_keep_their_meaning():
    he = run_spec(full_config(), "he", "sgd", 0)
    assert (he.init_function, he.init_kwargs) == ("kaiming_normal_", {"mode": "fan_in", "nonlinearity": "relu"})
    assert run_spec(full_config(), "xavier", "adam", 0).init_function == "xavier_normal_"
    assert (he.optimizer_class, he.optimizer_kwargs) == ("SGD", {"lr": 0.01, "momentum": 0.9})
    rmsprop = run_spec(full_config(), "he", "rmsprop", 0)
    assert (rmsprop.optimizer_class, rmsprop.optimizer_kwargs) == ("RMSprop", {"lr": 0.001, "alpha": 0.99})


@pytest.mark.parametrize(
    "change,expected",
    [
        (lambda c: c["inits"].update(he={"function": "kaiming_gaussian_"}), ["inits.he.function", "kaiming_uniform_"]),
        (lambda c: c["inits"]["he"]["kwargs"].update(fan="in"), ["inits.he.kwargs.fan", "mode", "nonlinearity"]),
        (
            lambda c: c["optimizers"].update(adam={"class": "Adamm", "kwargs": {"lr": 0.1}}),
            ["optimizers.adam.class", "AdamW"],
        ),
        (
            lambda c: c["optimizers"]["sgd"]["kwargs"].update(beta=0.9),
            ["optimizers.sgd.kwargs.beta", "momentum", "nesterov"],
        ),
        (lambda c: c["grid"].update(optimizers=["lion"]), ["grid.optimizers", "lion", "adamw"]),
    ],
)
def test_unknown_names_and_arguments_are_rejected_with_the_valid_ones(change, expected):
    config = full_config()
    change(config)
    with pytest.raises(ConfigError) as raised:
        check_config(config)
    for fragment in expected:
        assert fragment in str(raised.value)


def test_equal_numbers_spelt_differently_give_one_run_spec():
    a, b = full_config(), full_config()
    b["optimizers"]["sgd"]["kwargs"] = {"momentum": 9.0e-1, "lr": 1.0e-2}
    b["training"]["epochs"] = 10.0
    assert run_spec(a, "he", "sgd", 1).fingerprint() == run_spec(b, "he", "sgd", 1).fingerprint()
