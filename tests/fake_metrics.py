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
    "adam": ("Adam", {"lr": 0.001, "betas": [0.9, 0.999]}),
    "rmsprop": ("RMSprop", {"lr": 0.001, "alpha": 0.99}),
}
LAYERS = [("conv1", [32, 1, 3, 3]), ("conv2", [64, 32, 3, 3]), ("fc1", [128, 3136]), ("fc2", [10, 128])]


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
) -> dict:
    """A schema-valid metrics dict. `val_accuracy` lists the completed epochs; `diverged_at=(epoch, step)`
    makes a run that stopped there (its completed epochs are those listed, its test result null)."""
    init_function, init_kwargs = INIT_FUNCTIONS.get(init, ("orthogonal_", {}))
    optimizer_class, optimizer_kwargs = OPTIMIZERS.get(optimizer, ("AdamW", {"lr": 0.001}))
    optimizer_kwargs = {**optimizer_kwargs, **({"lr": lr} if lr is not None else {})}
    completed = len(val_accuracy)
    epoch_seconds = epoch_seconds if epoch_seconds is not None else [10.0] * completed
    diverged = diverged_at is not None
    train_loss = [2.0 / (epoch + 1) for epoch in range(completed)]
    return {
        "schema_version": 1,
        "run": {"id": f"{init}_{optimizer}_seed{seed}", "init": init, "optimizer": optimizer, "seed": seed},
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
            "precision": "fp32",
        },
        "precision": "fp32",
        "hyperparameters": {**optimizer_kwargs, "weight_decay": 0, "foreach": None},
        "data": {"validation_source": "holdout", "train": 400, "validation": 100, "test": 200},
        "history": {
            "epoch": list(range(1, completed + 1)),
            "train_loss": train_loss,
            "val_loss": [loss * 1.1 for loss in train_loss],
            "val_accuracy": list(val_accuracy),
            "epoch_seconds": list(epoch_seconds),
        },
        "test": {"loss": None, "accuracy": None}
        if diverged
        else {
            "loss": 0.5,
            "accuracy": test_accuracy if test_accuracy is not None else val_accuracy[-1],
        },
        "training_seconds": float(sum(epoch_seconds)),
        "divergence": {"epoch": diverged_at[0], "step": diverged_at[1], "loss": "nan"} if diverged else None,
        "init_weight_stats": _weight_stats(init, seed),
        "diagnostics": _diagnostics(init, completed),
        "cost": {
            "process_cpu_seconds": float(sum(epoch_seconds)),
            "median_step_seconds": 0.01,
            "steps_timed": 16 * completed,
            "load_average_start": 1.0,
            "load_average_end": 1.0,
            "cpu_count": 2,
            "threads": 2,
        },
        "environment": {
            "python": "3.11.2",
            "torch": "2.14.1",
            "torchvision": "0.29.1",
            "snakemake": "9.27.1",
            "device": "cpu",
            "device_name": "x86_64",
            "threads": 2,
            "host": "testhost",
            "git_commit": "abc123",
        },
    }


def _diagnostics(init: str, completed: int) -> dict:
    """A plausible signal record: He keeps the activation std near 1, Xavier's is weaker."""
    layers = ["conv1", "conv2", "fc1", "fc2"]
    scale = 1.3 if init == "he" else 0.2
    snapshots = list(range(completed + 1))
    return {
        "probe_size": 256,
        "probe_seed": 0,
        "layers": layers,
        "snapshot_epochs": snapshots,
        "activation_std": {layer: [scale * (1 + 0.1 * i)] * len(snapshots) for i, layer in enumerate(layers)},
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
