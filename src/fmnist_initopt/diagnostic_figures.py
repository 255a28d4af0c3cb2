"""Figures of the signal-propagation diagnostics and of the learning-rate sweep, written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from fmnist_initopt.atomic import atomic_path  # noqa: E402
from fmnist_initopt.signal_analysis import init_signal_table, layer_summary  # noqa: E402
from fmnist_initopt.sweep_analysis import best_learning_rates, lr_summary, sweep_table  # noqa: E402


def _save(figure, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)


def signal_at_init_figure(metrics_list: list[dict[str, Any]], path: str | Path) -> None:
    """Activation std and weight-gradient norm by layer at initialisation, one line per init,
    the seeds' min-max as error bars."""
    summary = layer_summary(init_signal_table(metrics_list))
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    panels = (
        ("activation_std", "activation std (pre-ReLU; fc2: logits)"),
        ("weight_grad_norm", "weight-gradient norm"),
    )
    for axis, (column, label) in zip(axes, panels):
        for init, group in summary.groupby("init"):
            errors = [group[column] - group[f"{column}_min"], group[f"{column}_max"] - group[column]]
            axis.errorbar(group["layer"], group[column], yerr=errors, marker="o", capsize=3, label=init)
        axis.set_yscale("log")
        axis.set_xlabel("layer (input → output)")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(title="init")
    figure.suptitle("Signal at initialisation on the probe batch (mean over seeds, bars: min–max)")
    _save(figure, path)


def grad_norm_over_epochs_figure(metrics_list: list[dict[str, Any]], path: str | Path) -> None:
    """Weight-gradient norm per layer over epochs (0 = initialisation), one panel per (init, optimizer),
    mean over seeds."""
    rows = []
    for metrics in metrics_list:
        found = metrics["diagnostics"]
        for layer in found["layers"]:
            for epoch, value in zip(found["snapshot_epochs"], found["weight_grad_norm"][layer]):
                rows.append(
                    {
                        "init": metrics["run"]["init"],
                        "optimizer": metrics["run"]["optimizer"],
                        "layer": layer,
                        "epoch": epoch,
                        "norm": value,
                    }
                )
    table = pd.DataFrame(rows).astype({"norm": float})
    inits, optimizers = list(dict.fromkeys(table["init"])), list(dict.fromkeys(table["optimizer"]))
    figure, axes = plt.subplots(
        len(inits),
        len(optimizers),
        figsize=(3.6 * len(optimizers), 3 * len(inits)),
        sharex=True,
        sharey=True,
        squeeze=False,
    )
    layers = list(dict.fromkeys(table["layer"]))
    for row, init in enumerate(inits):
        for col, optimizer in enumerate(optimizers):
            axis = axes[row][col]
            subset = table[(table["init"] == init) & (table["optimizer"] == optimizer)]
            means = subset.groupby(["layer", "epoch"])["norm"].mean()
            for layer in layers:
                if layer in means.index.get_level_values("layer"):
                    axis.plot(means[layer].index, means[layer].to_numpy(), marker=".", label=layer)
            axis.set_yscale("log")
            axis.set_title(f"{init} + {optimizer}")
            axis.grid(True, which="both", alpha=0.3)
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
            if row == len(inits) - 1:
                axis.set_xlabel("epoch (0 = init)")
            if col == 0:
                axis.set_ylabel("weight-gradient norm")
    axes[0][-1].legend(title="layer", fontsize="small")
    figure.suptitle("Probe-batch gradient norm by layer over training (mean over seeds)")
    _save(figure, path)


def lr_sweep_figure(metrics_list: list[dict[str, Any]], default_lrs: dict[str, float], path: str | Path) -> None:
    """Final validation accuracy vs learning rate (log x), one panel per optimizer, one line per init,
    the seeds' min-max as a band; the default lr dotted, the chosen lr circled."""
    table = sweep_table(metrics_list)
    summary, best = lr_summary(table), best_learning_rates(table)
    optimizers = list(dict.fromkeys(table["optimizer"]))
    figure, axes = plt.subplots(1, len(optimizers), figsize=(4.2 * len(optimizers), 3.8), sharey=True, squeeze=False)
    for axis, optimizer in zip(axes[0], optimizers):
        for init, group in summary[summary["optimizer"] == optimizer].groupby("init"):
            line = axis.plot(group["lr"], group["val_mean"], marker="o", label=init)[0]
            axis.fill_between(group["lr"], group["val_min"], group["val_max"], color=line.get_color(), alpha=0.2)
            chosen = best[(best["init"] == init) & (best["optimizer"] == optimizer)]["best_lr"].dropna()
            if not chosen.empty:
                at = group[np.isclose(group["lr"], chosen.iloc[0])]
                axis.scatter(at["lr"], at["val_mean"], s=160, facecolors="none", edgecolors=line.get_color())
        axis.axvline(default_lrs[optimizer], color="grey", linestyle=":", label="default lr")
        axis.set_xscale("log")
        axis.set_xlabel("learning rate")
        axis.set_title(optimizer)
        axis.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("final validation accuracy")
    axes[0][-1].legend(title="init", fontsize="small")
    figure.suptitle("Learning-rate sensitivity (mean over seeds, band: min–max; circle: best on validation)")
    _save(figure, path)
