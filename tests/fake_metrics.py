"""Hand-made metrics.json dictionaries whose truth is known, for testing the analysis without training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

INIT_FUNCTIONS = {
    "he": ("kaiming_normal_", {"mode": "fan_in", "nonlinearity": "relu"}),
    "xavier": ("xavier_normal_", {}),
}
OPTIMIZERS = {
    "sgd": ("SGD", {"lr": 0.01, "momentum": 0.9}),
    "nesterov": ("SGD", {"lr": 0.01, "momentum": 0.9, "nesterov": True}),
    "adam": ("Adam", {"lr": 0.001, "betas": [0.9, 0.999]}),
    "rmsprop": ("RMSprop", {"lr": 0.001, "alpha": 0.99}),
}
DATA_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
LAYERS = [("conv1", [32, 1, 3, 3]), ("conv2", [64, 32, 3, 3]), ("fc1", [128, 3136]), ("fc2", [10, 128])]


# The five questions findings.md opens with, one line each, in this order.
ANSWER_QUESTIONS = (
    "**Which init?**",
    "**Does it depend on the optimizer?**",
    "**Which optimizers differ?**",
    "**Best set:**",
    "**What could it detect?**",
)


def _weight_stats(init: str, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    stats = []
    for layer, shape in LAYERS:
        fan_in = int(np.prod(shape[1:]))
        fan_out = shape[0] * int(np.prod(shape[2:]))
        std = np.sqrt(2 / fan_in) if init == "he" else np.sqrt(2 / (fan_in + fan_out))
        sample = rng.normal(0, std, 2000)
        counts, edges = np.histogram(sample, bins=30)
        stats.append(
            {
                "layer": layer,
                "shape": shape,
                "fan_in": fan_in,
                "fan_out": fan_out,
                "mean": float(sample.mean()),
                "std": float(sample.std()),
                "bias_abs_max": 0.0,
                "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
            }
        )
    return stats


def fake_metrics(
    init: str,
    optimizer: str,
    seed: int,
    val_accuracy: list[float],
    test_accuracy: float | None = None,
    epoch_seconds: list[float] | None = None,
    diverged_at: tuple[int, int] | None = None,
    lr: float | None = None,
    epochs: int | None = None,
    with_diagnostics: bool = True,
    signal_scale: float | None = None,
    cost: dict | None = None,
    depth: int = 0,
    train_accuracy: float | None = None,
    with_train_evaluation: bool = True,
    precisions: list[str] | None = None,
    devices: list[str] | None = None,
    test_loss: float = 0.5,
) -> dict:
    """A schema-valid metrics dict. `val_accuracy` lists the completed epochs; `diverged_at=(epoch, step)`
    makes a run that stopped there (its completed epochs are those listed, its test result null).
    `with_diagnostics=False` leaves the diagnostics out (a run recorded before they existed: not schema-valid);
    `signal_scale` replaces the init's activation-std and gradient-norm scale of the diagnostics. `cost`
    overrides fields of the run's own cost record (process CPU time, median step time, load it ran under).
    `depth` extra conv layers weaken every init's logits but He's by 0.7 per layer. `train_accuracy` is the
    final evaluation pass over the training images (default: the test accuracy + 0.02; its loss is 0.6 x the
    test loss); `with_train_evaluation=False` leaves it out, as in runs recorded before it existed.
    `precisions` and `devices` are the per-epoch records (default: fp32 and cpu in every epoch)."""
    init_function, init_kwargs = INIT_FUNCTIONS.get(init, ("orthogonal_", {}))
    optimizer_class, optimizer_kwargs = OPTIMIZERS.get(optimizer, ("AdamW", {"lr": 0.001}))
    optimizer_kwargs = {**optimizer_kwargs, **({"lr": lr} if lr is not None else {})}
    completed = len(val_accuracy)
    epoch_seconds = epoch_seconds if epoch_seconds is not None else [10.0] * completed
    diverged = diverged_at is not None
    train_loss = [2.0 / (epoch + 1) for epoch in range(completed)]
    test = test_accuracy if test_accuracy is not None else (val_accuracy[-1] if val_accuracy else None)
    train_evaluation = {
        "loss": None if diverged else 0.6 * test_loss,
        "accuracy": None if diverged else (train_accuracy if train_accuracy is not None else min(1.0, test + 0.02)),
        "images": 400,
    }
    metrics = {
        "schema_version": 1,
        "run": {
            "id": f"{init}_{optimizer}{f'_depth{depth}' if depth else ''}_seed{seed}",
            "init": init,
            "optimizer": optimizer,
            "depth": depth,
            "seed": seed,
        },
        "model": {
            "extra_conv_layers": depth,
            "description": "conv1 -> conv2" + " -> conv" * depth + " -> fc1 -> fc2",
            "parameters": 421_642 + 36_928 * depth,
        },
        "status": "diverged" if diverged else "completed",
        "spec": {
            "init": init,
            "init_function": init_function,
            "init_kwargs": init_kwargs,
            "optimizer": optimizer,
            "optimizer_class": optimizer_class,
            "optimizer_kwargs": optimizer_kwargs,
            "seed": seed,
            "epochs": epochs or (diverged_at[0] if diverged else completed),
            "batch_size": 64,
            "split": {"val_source": "holdout", "val_size": 100, "split_seed": 0, "train_size": None},
            "data": {name: f"{index:064x}" for index, name in enumerate(DATA_FILES)},
            **({"model": {"extra_conv_layers": depth}} if depth else {}),
            "precision": "fp32",
        },
        "precision": precisions[-1] if precisions else "fp32",
        "hyperparameters": {**optimizer_kwargs, "weight_decay": 0, "maximize": False, "foreach": None},
        "data": {"validation_source": "holdout", "train": 400, "validation": 100, "test": 200},
        "history": {
            "epoch": list(range(1, completed + 1)),
            "train_loss": train_loss,
            "val_loss": [loss * 1.1 for loss in train_loss],
            "val_accuracy": list(val_accuracy),
            "epoch_seconds": list(epoch_seconds),
            "precision": list(precisions) if precisions is not None else ["fp32"] * completed,
            "device": list(devices) if devices is not None else ["cpu"] * completed,
        },
        "test": {"loss": None, "accuracy": None}
        if diverged
        else {
            "loss": test_loss,
            "accuracy": test,
        },
        "train_evaluation": train_evaluation,
        "training_seconds": float(sum(epoch_seconds)),
        "divergence": {"epoch": diverged_at[0], "step": diverged_at[1], "loss": "nan"} if diverged else None,
        "cost": {
            "process_cpu_seconds": 1.9 * float(sum(epoch_seconds)),
            "median_step_seconds": 0.002 if optimizer == "sgd" else 0.0025,
            "steps_timed": 7 * completed,
            "load_average_start": 1.5,
            "load_average_end": 2.5,
            "cpu_count": 2,
            "threads": 2,
            **(cost or {}),
        },
        "init_weight_stats": _weight_stats(init, seed),
        **({"diagnostics": _diagnostics(init, completed, signal_scale, depth)} if with_diagnostics else {}),
        "environment": {
            "python": "3.11.2",
            "torch": "2.14.1",
            "torchvision": "0.29.1",
            "snakemake": "9.27.1",
            "device": devices[-1] if devices else "cpu",
            "device_name": "x86_64",
            "threads": 2,
            "host": "testhost",
            "git_commit": "abc123",
        },
        "identity": {"training_code_sha256": "0" * 64, "torch": "2.14.1", "precision": "fp32"},
    }
    if not with_train_evaluation:
        del metrics["train_evaluation"]
    return metrics


def _diagnostics(init: str, completed: int, scale: float | None = None, depth: int = 0) -> dict:
    """A plausible signal record: He keeps the activation std near 1, Xavier's is weaker (and weakens with depth)."""
    layers = ["conv1", "conv2", *(f"conv{3 + i}" for i in range(depth)), "fc1", "fc2"]
    scale = scale if scale is not None else 1.3 if init == "he" else 0.2
    snapshots = list(range(completed + 1))
    activation_std = {layer: [scale * (1 + 0.1 * i)] * len(snapshots) for i, layer in enumerate(layers)}
    activation_std["fc2"] = [value * (1.0 if init == "he" else 0.7**depth) for value in activation_std["fc2"]]
    return {
        "probe_size": 256,
        "probe_seed": 0,
        "layers": layers,
        "snapshot_epochs": snapshots,
        "activation_std": activation_std,
        "weight_grad_norm": {layer: [scale] * len(snapshots) for layer in layers},
        "grad_norm_mean": [1.0] * completed,
        "grad_norm_max": [2.0] * completed,
    }


def write_metrics(root: Path, all_metrics: list[dict]) -> list[Path]:
    paths = []
    for metrics in all_metrics:
        path = root / "results" / "runs" / metrics["run"]["id"] / "metrics.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(metrics))
        paths.append(path)
    return paths
