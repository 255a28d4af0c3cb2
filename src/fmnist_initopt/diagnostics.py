"""Signal-propagation diagnostics: how strongly the signal travels forward and the gradient backward.

Two kinds of measurement, both stored in metrics.json under `diagnostics`:

* A snapshot on a fixed probe batch (the same training images for every run), right after
  initialisation and after every epoch: per Conv2d/Linear layer, the standard deviation of the
  layer's output over all its elements (the pre-activation, i.e. before the ReLU that follows it;
  for the last layer, the logits) and the L2 norm of the gradient of the probe batch's mean
  cross-entropy with respect to the layer's weight. Pre-activations are what He's derivation keeps
  at a constant variance, and they are defined for every layer, the logits included.
  The snapshot uses torch.autograd.grad, so it leaves the parameters' .grad, the optimizer state,
  the random number generators and the model's train/eval mode exactly as it found them.
* The global gradient norm (all parameters, the gradient each optimizer step uses) of every
  training step, summarised per epoch as its mean and maximum. It is accumulated on the training
  device through an optimizer step pre-hook, so it adds no host sync per step and no change to the
  training loop.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

PROBE_SIZE = 256
# Fixed and independent of the run's seed: every run of a study probes the same images.
PROBE_SEED = 20_240_601
DIAGNOSED_LAYERS = (nn.Conv2d, nn.Linear)


def probe_batch(
    images: torch.Tensor, labels: torch.Tensor, size: int = PROBE_SIZE, seed: int = PROBE_SEED
) -> tuple[torch.Tensor, torch.Tensor]:
    """`size` training images (all of them if fewer) picked by a generator of their own."""
    index = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))[:size]
    index = index.to(images.device)
    return images[index], labels[index]


def diagnosed_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, module) for name, module in model.named_modules() if isinstance(module, DIAGNOSED_LAYERS)]


def _finite_or_none(value: float) -> float | None:
    """JSON has no NaN or infinity: an exploded signal is recorded as null."""
    return value if math.isfinite(value) else None


def signal_snapshot(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> dict[str, dict[str, float | None]]:
    """Per layer: std of the layer's output on the probe batch and norm of its weight gradient."""
    layers = diagnosed_layers(model)
    outputs: dict[str, torch.Tensor] = {}

    def keep_output(name):
        def hook(_module, _inputs, output):
            outputs[name] = output

        return hook

    handles = [module.register_forward_hook(keep_output(name)) for name, module in layers]
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            loss = F.cross_entropy(model(images), labels)
            grads = torch.autograd.grad(loss, [module.weight for _, module in layers])
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    with torch.no_grad():
        stds = torch.stack([outputs[name].detach().to(torch.float64).std() for name, _ in layers])
        norms = torch.stack([torch.linalg.vector_norm(g.to(torch.float64)) for g in grads])
    names = [name for name, _ in layers]
    return {
        "activation_std": dict(zip(names, map(_finite_or_none, stds.tolist()))),
        "weight_grad_norm": dict(zip(names, map(_finite_or_none, norms.tolist()))),
    }


class GradNormTracker:
    """Mean and max of the global gradient norm over an epoch's optimizer steps.

    Hooked in front of `optimizer.step()`, it reads the gradients the step is about to use.
    The running sum and maximum stay on the device; `epoch_summary()` is the only host sync.
    """

    def __init__(self, optimizer: torch.optim.Optimizer):
        self._params = [p for group in optimizer.param_groups for p in group["params"]]
        device = self._params[0].device
        self._sum = torch.zeros((), dtype=torch.float64, device=device)
        self._max = torch.zeros((), dtype=torch.float64, device=device)
        self._steps = 0
        self._handle = optimizer.register_step_pre_hook(self._record)

    def _record(self, _optimizer, _args, _kwargs) -> None:
        grads = [p.grad for p in self._params if p.grad is not None]
        if not grads:
            return
        with torch.no_grad():
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))).to(torch.float64)
            self._sum += norm
            torch.maximum(self._max, norm, out=self._max)
        self._steps += 1

    def epoch_summary(self) -> tuple[float | None, float | None]:
        """(mean, max) since the last call, then starts afresh."""
        if self._steps == 0:
            return None, None
        mean, maximum = (torch.stack([self._sum / self._steps, self._max])).tolist()
        self._sum.zero_()
        self._max.zero_()
        self._steps = 0
        return _finite_or_none(mean), _finite_or_none(maximum)

    def close(self) -> None:
        self._handle.remove()


def new_record(model: nn.Module, probe: tuple[torch.Tensor, torch.Tensor]) -> dict[str, Any]:
    """The diagnostics of a freshly initialised model: the snapshot at epoch 0, no steps yet."""
    snapshot = signal_snapshot(model, *probe)
    return {
        "probe_size": len(probe[1]),
        "probe_seed": PROBE_SEED,
        "layers": list(snapshot["activation_std"]),
        "snapshot_epochs": [0],
        "activation_std": {layer: [value] for layer, value in snapshot["activation_std"].items()},
        "weight_grad_norm": {layer: [value] for layer, value in snapshot["weight_grad_norm"].items()},
        "grad_norm_mean": [],
        "grad_norm_max": [],
    }


def record_epoch(
    record: dict[str, Any],
    epoch: int,
    model: nn.Module,
    probe: tuple[torch.Tensor, torch.Tensor],
    tracker: GradNormTracker,
) -> None:
    """Append the end-of-epoch snapshot and the epoch's gradient-norm summary to `record`."""
    snapshot = signal_snapshot(model, *probe)
    record["snapshot_epochs"].append(epoch)
    for key in ("activation_std", "weight_grad_norm"):
        for layer, value in snapshot[key].items():
            record[key][layer].append(value)
    mean, maximum = tracker.epoch_summary()
    record["grad_norm_mean"].append(mean)
    record["grad_norm_max"].append(maximum)
