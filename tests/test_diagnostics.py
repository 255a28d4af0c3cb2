"""Signal-propagation diagnostics: known answers on toy stacks, and their place in a training run."""

import math

import jsonschema
import pytest
import torch
import yaml
from conftest import REPO, spec, synthetic_splits, without_timings
from torch import nn

from fmnist_initopt import diagnostics, training

WIDTH, DEPTH = 256, 8


def relu_stack(weight_std: float) -> nn.Sequential:
    torch.manual_seed(0)
    layers = []
    for _ in range(DEPTH):
        linear = nn.Linear(WIDTH, WIDTH)
        nn.init.normal_(linear.weight, std=weight_std)
        nn.init.zeros_(linear.bias)
        layers += [linear, nn.ReLU()]
    return nn.Sequential(*layers)


def probe():
    generator = torch.Generator().manual_seed(1)
    return torch.randn(512, WIDTH, generator=generator), torch.randint(0, 10, (512,), generator=generator)


def stds_by_depth(model):
    snapshot = diagnostics.signal_snapshot(model, *probe())
    return list(snapshot["activation_std"].values()), list(snapshot["weight_grad_norm"].values())


def test_a_tiny_init_makes_the_signal_vanish_layer_by_layer():
    stds, grad_norms = stds_by_depth(relu_stack(weight_std=0.01))
    assert len(stds) == DEPTH
    # each layer multiplies the std by about 0.01 * sqrt(WIDTH / 2) = 0.11
    assert all(deeper < 0.5 * shallower for shallower, deeper in zip(stds, stds[1:]))
    assert stds[-1] < 1e-5 * stds[0]
    assert max(grad_norms) < 1e-4


def test_he_init_keeps_the_relu_signal_within_a_factor_of_two():
    stds, _ = stds_by_depth(relu_stack(weight_std=math.sqrt(2.0 / WIDTH)))
    assert max(stds) / min(stds) < 2.0


def test_the_snapshot_leaves_gradients_mode_and_rng_alone():
    model = relu_stack(weight_std=0.05)
    model.train()
    for parameter in model.parameters():
        parameter.grad = torch.full_like(parameter, 7.0)
    rng = torch.get_rng_state()
    diagnostics.signal_snapshot(model, *probe())
    assert model.training
    assert all(torch.equal(p.grad, torch.full_like(p, 7.0)) for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)


def test_the_tracker_reports_mean_and_max_of_the_global_gradient_norm():
    parameter = nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD([parameter], lr=0.0)
    tracker = diagnostics.GradNormTracker(optimizer)
    for grad in ([3.0, 4.0], [0.0, 1.0]):
        parameter.grad = torch.tensor(grad)
        optimizer.step()
    assert tracker.epoch_summary() == pytest.approx((3.0, 5.0))
    assert tracker.epoch_summary() == (None, None)  # starts afresh after each epoch


@pytest.fixture(scope="module")
def splits():
    return synthetic_splits(n_train=200)


@pytest.fixture(scope="module")
def uninterrupted(splits):
    return training.train_run(spec(epochs=2), splits, torch.device("cpu"))


def test_metrics_carry_the_diagnostics_per_layer_and_epoch(uninterrupted):
    metrics = uninterrupted
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "metrics.schema.yaml").read_text())
    jsonschema.validate(metrics["diagnostics"], {**schema["properties"]["diagnostics"], "$defs": schema["$defs"]})
    found = metrics["diagnostics"]
    assert found["layers"] == ["conv1", "conv2", "fc1", "fc2"]
    assert found["snapshot_epochs"] == [0, 1, 2]
    assert found["probe_size"] == min(diagnostics.PROBE_SIZE, metrics["data"]["train"])
    for key in ("activation_std", "weight_grad_norm"):
        assert all(len(values) == 3 and all(v > 0 for v in values) for values in found[key].values())
    assert len(found["grad_norm_mean"]) == len(found["grad_norm_max"]) == 2
    assert all(0 < mean <= peak for mean, peak in zip(found["grad_norm_mean"], found["grad_norm_max"]))


class Interrupted(Exception):
    pass


def test_a_resumed_run_has_the_same_diagnostics_as_an_uninterrupted_one(tmp_path, monkeypatch, splits, uninterrupted):
    device = torch.device("cpu")

    real_train_epoch, calls = training.train_epoch, []

    def crash_in_epoch_two(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise Interrupted
        return real_train_epoch(*args, **kwargs)

    checkpoint = tmp_path / "run.pt"
    monkeypatch.setattr(training, "train_epoch", crash_in_epoch_two)
    with pytest.raises(Interrupted):
        training.train_run(spec(epochs=2), splits, device, checkpoint)
    monkeypatch.setattr(training, "train_epoch", real_train_epoch)
    resumed = training.train_run(spec(epochs=2), splits, device, checkpoint)
    assert resumed["diagnostics"] == uninterrupted["diagnostics"]
    assert without_timings(resumed) == without_timings(uninterrupted)
