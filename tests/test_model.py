import math

import pytest
import torch
from torch import nn

from fmnist_initopt.model import CNN, build_model, weight_stats
from fmnist_initopt.optimizers import build_optimizer, hyperparameters_in_use

HE = ("kaiming_normal_", {"mode": "fan_in", "nonlinearity": "relu"})
XAVIER = ("xavier_normal_", {})


def stats_by_layer(model):
    return {entry["layer"]: entry for entry in weight_stats(model)}


def test_he_weights_are_wider_than_xavier_on_conv_layers():
    he, xavier = stats_by_layer(build_model(*HE, seed=0)), stats_by_layer(build_model(*XAVIER, seed=0))
    for layer in ("conv1", "conv2"):
        assert he[layer]["std"] > xavier[layer]["std"]


@pytest.mark.parametrize("function,kwargs", [HE, XAVIER])
def test_std_matches_the_analytic_value(function, kwargs):
    for entry in weight_stats(build_model(function, kwargs, seed=3)):
        fan_in, fan_out, count = entry["fan_in"], entry["fan_out"], math.prod(entry["shape"])
        expected = math.sqrt(2.0 / fan_in) if function == "kaiming_normal_" else math.sqrt(2.0 / (fan_in + fan_out))
        # the sample std of n normal draws has a standard error of about std / sqrt(2n)
        tolerance = 5 * expected / math.sqrt(2 * count)
        assert abs(entry["std"] - expected) < tolerance, entry["layer"]
        assert abs(entry["mean"]) < 5 * expected / math.sqrt(count)


@pytest.mark.parametrize("function,kwargs", [HE, XAVIER])
def test_only_conv_and_linear_weights_are_touched_and_biases_are_zero(function, kwargs):
    model = build_model(function, kwargs, seed=0)
    default = build_model("default", {}, seed=0)
    for (name, param), (_, default_param) in zip(model.named_parameters(), default.named_parameters()):
        if name.endswith("bias"):
            assert torch.count_nonzero(param) == 0, name
            assert torch.count_nonzero(default_param) > 0  # PyTorch's own init does not zero them
        else:
            assert not torch.equal(param, default_param), name
    assert {entry["layer"] for entry in weight_stats(model)} == {"conv1", "conv2", "fc1", "fc2"}


def test_model_is_the_brief_cnn():
    model = CNN()
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    assert shapes == {
        "conv1.weight": (32, 1, 3, 3),
        "conv1.bias": (32,),
        "conv2.weight": (64, 32, 3, 3),
        "conv2.bias": (64,),
        "fc1.weight": (128, 3136),
        "fc1.bias": (128,),
        "fc2.weight": (10, 128),
        "fc2.bias": (10,),
    }
    assert model(torch.zeros(5, 1, 28, 28)).shape == (5, 10)


@pytest.mark.parametrize(
    "class_name,kwargs",
    [
        ("SGD", {"lr": 0.01, "momentum": 0.9}),
        ("Adam", {"lr": 0.001, "betas": [0.9, 0.999]}),
        ("RMSprop", {"lr": 0.001, "alpha": 0.99}),
    ],
)
def test_optimizer_holds_the_configured_hyperparameters_and_steps(class_name, kwargs):
    model = build_model(*HE, seed=0)
    optimizer = build_optimizer(model, class_name, kwargs)
    used = hyperparameters_in_use(optimizer)
    for key, value in kwargs.items():
        assert used[key] == pytest.approx(value)
    before = [p.detach().clone() for p in model.parameters()]
    loss = nn.functional.cross_entropy(model(torch.randn(8, 1, 28, 28)), torch.arange(8))
    loss.backward()
    optimizer.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()) if b.ndim > 1)
