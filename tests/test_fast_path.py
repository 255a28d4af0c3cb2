"""The fast path (channels-last, pool before ReLU, fused optimizers, batches by index) computes
what a plain implementation of the brief computes, to float tolerance."""

import pytest
import torch
import torch.nn.functional as F
from conftest import reference_loop

from fmnist_initopt.data import normalise
from fmnist_initopt.optimizers import build_optimizer
from fmnist_initopt.study import RunSpec
from fmnist_initopt.training import MEMORY_FORMAT, epoch_generator, model_and_optimizer, train_epoch

BriefCNN = reference_loop().CNN

INITS = {
    "he": ("kaiming_normal_", {"mode": "fan_in", "nonlinearity": "relu"}),
    "xavier": ("xavier_normal_", {}),
}
OPTIMIZERS = {
    "sgd": ("SGD", {"lr": 0.01, "momentum": 0.9}),
    "adam": ("Adam", {"lr": 0.001, "betas": [0.9, 0.999]}),
    "rmsprop": ("RMSprop", {"lr": 0.001, "alpha": 0.99}),
}
BATCH = 64


def spec(init, optimizer):
    return RunSpec(
        init=init,
        init_function=INITS[init][0],
        init_kwargs=INITS[init][1],
        optimizer=optimizer,
        optimizer_class=OPTIMIZERS[optimizer][0],
        optimizer_kwargs=OPTIMIZERS[optimizer][1],
        seed=3,
        epochs=1,
        batch_size=BATCH,
    )


def plain_copy(model, optimizer_name):
    """The brief's nn.Module with the same starting weights, and the optimizer's plain per-parameter loop."""
    reference = BriefCNN().to(next(model.parameters()).dtype)
    reference.load_state_dict({k: v.contiguous() for k, v in model.state_dict().items()})
    class_name, kwargs = OPTIMIZERS[optimizer_name]
    prepared = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    return reference, getattr(torch.optim, class_name)(reference.parameters(), foreach=False, **prepared)


def data(n, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 28, 28, generator=generator), torch.randint(0, 10, (n,), generator=generator)


def assert_same_parameters(fast, plain, **tolerance):
    for (name, a), b in zip(fast.named_parameters(), plain.parameters()):
        torch.testing.assert_close(a, b, **tolerance, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("init", INITS)
@pytest.mark.parametrize("optimizer_name", OPTIMIZERS)
def test_fast_path_gives_the_plain_loss_and_gradients_on_a_batch(init, optimizer_name):
    model, _ = model_and_optimizer(spec(init, optimizer_name), torch.device("cpu"))
    assert model.conv1.weight.is_contiguous(memory_format=MEMORY_FORMAT)
    reference, _ = plain_copy(model, optimizer_name)
    images, labels = data(BATCH)
    fast_loss = F.cross_entropy(model(images), labels)
    fast_loss.backward()
    plain_loss = torch.nn.CrossEntropyLoss()(reference(images), labels)
    plain_loss.backward()
    torch.testing.assert_close(fast_loss, plain_loss, rtol=1e-5, atol=1e-6)
    for (name, a), b in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=lambda m, name=name: f"{name}.grad: {m}")


@pytest.mark.parametrize("init", INITS)
@pytest.mark.parametrize("optimizer_name", OPTIMIZERS)
def test_project_epoch_loop_updates_the_parameters_as_the_plain_loop_does(init, optimizer_name):
    # In float64: Adam and RMSprop divide by sqrt(v) + eps, which turns float32 rounding in a
    # near-zero gradient into a visibly different step, so float32 parameters drift apart by
    # rounding alone. In float64 that rounding is negligible and any real difference would show.
    model, optimizer = model_and_optimizer(spec(init, optimizer_name), torch.device("cpu"))
    model.double()
    reference, plain_optimizer = plain_copy(model, optimizer_name)
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (3 * BATCH, 1, 28, 28), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (3 * BATCH,), generator=generator)
    images = normalise(pixels, torch.float64)  # what the brief's transforms give, in float64
    initial = [p.detach().clone() for p in model.parameters()]

    train_epoch(model, optimizer, pixels, labels, BATCH, epoch_generator(3, 1))
    order = torch.randperm(len(labels), generator=epoch_generator(3, 1))
    reference.train()
    for start in range(0, len(labels), BATCH):
        index = order[start : start + BATCH]
        plain_optimizer.zero_grad()
        torch.nn.CrossEntropyLoss()(reference(images[index]), labels[index]).backward()
        plain_optimizer.step()

    assert all(not torch.equal(a, b) for a, b in zip(model.parameters(), initial))
    assert_same_parameters(model, reference, rtol=1e-9, atol=1e-11)


def test_fused_implementation_is_used_only_where_the_config_leaves_the_choice_open():
    model = BriefCNN()
    assert build_optimizer(model, "Adam", {"lr": 0.001}).defaults["fused"] is True
    assert build_optimizer(model, "SGD", {"lr": 0.01, "foreach": False}).defaults["fused"] in (None, False)
    assert "fused" not in build_optimizer(model, "RMSprop", {"lr": 0.001}).defaults


def test_brief_and_project_networks_have_the_same_layers_and_parameter_shapes():
    model, _ = model_and_optimizer(spec("he", "adam"), torch.device("cpu"))
    shapes = {name: p.shape for name, p in model.named_parameters()}
    assert shapes == {name: p.shape for name, p in BriefCNN().named_parameters()}
