"""Figures of the signal-propagation diagnostics and of the learning-rate sweep, written atomically.

Every figure is drawn for any set of runs: a panel without data says so in words instead of failing,
and log axes get plain labels at a few round values only (matplotlib's default labels every minor
tick of an axis spanning less than a decade, and those labels run into each other).
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import (  # noqa: E402
    FixedLocator,
    FuncFormatter,
    LogLocator,
    MaxNLocator,
    NullFormatter,
    NullLocator,
)
from matplotlib.transforms import blended_transform_factory  # noqa: E402

from fmnist_initopt.atomic import atomic_path  # noqa: E402
from fmnist_initopt.signal_analysis import init_signal_table, layer_summary, number_or_nan, usable_diagnostics  # noqa: E402
from fmnist_initopt.sweep_analysis import (  # noqa: E402
    ALL_DIVERGED,
    LARGEST,
    ONLY_ONE,
    SMALLEST,
    best_learning_rates,
    lr_summary,
    sweep_table,
)

ROUND_MANTISSAS = (1.0, 2.0, 5.0)
# A sweep panel's note when some pair's optimum is not bracketed, the first that applies
EDGE_NOTES = {
    LARGEST: "best lr at the edge of the range",
    SMALLEST: "best lr at the edge of the range",
    ALL_DIVERGED: "every lr lost a seed to divergence",
    ONLY_ONE: "one lr: no optimum bracketed",
}


def _save(figure, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)


def _plain(value: float, _position=None) -> str:
    """0.001, 0.3, 2, 1e-06: the shortest plain spelling, no mathtext powers."""
    return f"{value:g}"


def _title(figure, text: str) -> None:
    """The figure's title, wrapped to the figure's width so it never runs into the legend beside it."""
    width_chars = max(30, int(figure.get_figwidth() * 11))
    figure.suptitle(textwrap.fill(text, width_chars))


def _legend(figure, handles, labels, title: str | None) -> None:
    """One legend for the whole figure, below the panels: beside them it would collide with a narrow figure's title."""
    figure.legend(handles, labels, title=title, loc="outside lower center", ncols=min(len(handles), 6))


def _no_data(axis, text: str) -> None:
    axis.text(0.5, 0.5, text, ha="center", va="center", wrap=True, transform=axis.transAxes, fontsize="medium")
    axis.set_xticks([])
    axis.set_yticks([])


def _no_data_figure(title: str, text: str, path: str | Path) -> None:
    figure, axis = plt.subplots(figsize=(6, 2.5), layout="constrained")
    _no_data(axis, text)
    _title(figure, title)
    _save(figure, path)


def _round_values_around(low: float, high: float) -> tuple[float, float]:
    """The largest 1-2-5 round value <= low and the smallest >= high (distinct), so the axis has labelled ticks."""
    exponent = math.floor(math.log10(low))
    series = sorted(m * 10.0**p for p in range(exponent - 1, math.floor(math.log10(high)) + 2) for m in ROUND_MANTISSAS)
    below = max(v for v in series if v <= low * (1 + 1e-9))
    above = min(v for v in series if v >= high * (1 - 1e-9) and v > below)
    return below, above


def legible_log_axis(axis, values, which: str = "y") -> None:
    """Log scale with plain labels at 1-2-5 round values (1-10-100 over several decades), none on minor ticks;
    a linear axis when there is no positive value to put on a log scale."""
    values = np.asarray([v for v in values if v is not None and np.isfinite(v) and v > 0], dtype=float)
    target = axis.yaxis if which == "y" else axis.xaxis
    if values.size == 0:
        return
    (axis.set_yscale if which == "y" else axis.set_xscale)("log")
    decades = math.log10(values.max() / values.min())
    target.set_major_locator(LogLocator(base=10, subs=ROUND_MANTISSAS if decades < 2 else (1.0,), numticks=8))
    target.set_major_formatter(FuncFormatter(_plain))
    target.set_minor_formatter(NullFormatter())
    if decades < 1:  # within a decade, make sure at least two round values are on the axis
        low, high = _round_values_around(values.min(), values.max())
        (axis.set_ylim if which == "y" else axis.set_xlim)(low / 1.15, high * 1.15)


def _layer_ticks(axis, layers: list[str]) -> None:
    axis.set_xticks(range(len(layers)))
    axis.set_xticklabels(layers, rotation=45 if len(layers) > 5 else 0, ha="right" if len(layers) > 5 else "center")


def signal_at_init_figure(metrics_list: list[dict[str, Any]], path: str | Path) -> None:
    """Activation std and weight-gradient norm by layer at initialisation, one line per init,
    the seeds' min-max as error bars."""
    title = "Signal at initialisation on the probe batch (mean over seeds, bars: min–max)"
    summary = layer_summary(init_signal_table(metrics_list))
    if summary.empty:
        _no_data_figure(title, "No run carries signal diagnostics: nothing to draw.", path)
        return
    layers = list(dict.fromkeys(summary.sort_values("depth")["layer"]))
    position = {layer: i for i, layer in enumerate(layers)}
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    panels = (
        ("activation_std", "activation std (pre-ReLU; last layer: logits)"),
        ("weight_grad_norm", "weight-gradient norm"),
    )
    for axis, (column, label) in zip(axes, panels):
        values = summary[[column, f"{column}_min", f"{column}_max"]].to_numpy(dtype=float).ravel()
        if not np.isfinite(values).any():
            _no_data(axis, f"no {label.split(' (')[0]} recorded")
            continue
        for init, group in summary.groupby("init"):
            errors = np.clip([group[column] - group[f"{column}_min"], group[f"{column}_max"] - group[column]], 0, None)
            axis.errorbar(
                group["layer"].map(position), group[column], yerr=errors, marker="o", capsize=3, label=str(init)
            )
        legible_log_axis(axis, values)
        _layer_ticks(axis, layers)
        axis.set_xlabel("layer (input → output)")
        axis.set_ylabel(label)
        axis.grid(True, which="major", alpha=0.3)
    handles, labels = next(
        (axis.get_legend_handles_labels() for axis in axes if axis.get_legend_handles_labels()[0]), ([], [])
    )
    if handles:
        _legend(figure, handles, labels, "init")
    _title(figure, title)
    _save(figure, path)


def grad_norm_table(metrics_list: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (run, layer, snapshot epoch): the probe batch's weight-gradient norm; null values as NaN."""
    rows = []
    for metrics in metrics_list:
        found = usable_diagnostics(metrics)
        if found is None:
            continue
        for layer in found["layers"]:
            series = (found.get("weight_grad_norm") or {}).get(layer) or []
            for epoch, value in zip(found.get("snapshot_epochs") or [], series):
                rows.append(
                    {
                        "init": metrics["run"]["init"],
                        "optimizer": metrics["run"]["optimizer"],
                        "layer": layer,
                        "epoch": epoch,
                        "norm": number_or_nan(value),
                    }
                )
    return pd.DataFrame(rows, columns=["init", "optimizer", "layer", "epoch", "norm"]).astype({"norm": float})


def grad_norm_over_epochs_figure(metrics_list: list[dict[str, Any]], path: str | Path) -> None:
    """Weight-gradient norm per layer over epochs (0 = initialisation), one panel per (init, optimizer),
    mean over seeds; a panel says how many of its runs diverged or carry no diagnostics."""
    title = "Probe-batch weight-gradient norm by layer over training (mean over seeds)"
    if not metrics_list:
        _no_data_figure(title, "No runs: nothing to draw.", path)
        return
    table = grad_norm_table(metrics_list)
    if table["norm"].notna().sum() == 0:
        blind = sum(usable_diagnostics(m) is None for m in metrics_list)
        _no_data_figure(
            title, f"No gradient norms recorded ({blind} of {len(metrics_list)} runs carry no diagnostics).", path
        )
        return
    inits = list(dict.fromkeys(m["run"]["init"] for m in metrics_list))
    optimizers = list(dict.fromkeys(m["run"]["optimizer"] for m in metrics_list))
    layers = list(dict.fromkeys(table["layer"]))
    colours = {layer: f"C{i % 10}" for i, layer in enumerate(layers)}
    figure, axes = plt.subplots(
        len(inits),
        len(optimizers),
        figsize=(max(6.5, 3.6 * len(optimizers) + 1.5), 0.6 + 2.9 * len(inits)),
        sharex=True,
        sharey=True,
        squeeze=False,
        layout="constrained",
    )
    drawn = False
    for row, init in enumerate(inits):
        for col, optimizer in enumerate(optimizers):
            axis = axes[row][col]
            runs = [m for m in metrics_list if m["run"]["init"] == init and m["run"]["optimizer"] == optimizer]
            subset = table[(table["init"] == init) & (table["optimizer"] == optimizer)].dropna(subset=["norm"])
            notes = []
            diverged = sum(m.get("status") == "diverged" for m in runs)
            if diverged:
                notes.append(f"{diverged} of {len(runs)} runs diverged")
            blind = sum(usable_diagnostics(m) is None for m in runs)
            if blind:
                notes.append(f"{blind} of {len(runs)} without diagnostics")
            axis.set_title("\n".join([f"{init} + {optimizer}", *notes]), fontsize="medium")
            if subset.empty:
                axis.text(
                    0.5,
                    0.5,
                    "no gradient norms recorded" if runs else "no runs",
                    ha="center",
                    va="center",
                    transform=axis.transAxes,
                )
            means = subset.groupby(["layer", "epoch"])["norm"].mean()
            for layer in layers:
                if layer in means.index.get_level_values("layer"):
                    axis.plot(means[layer].index, means[layer].to_numpy(), marker="o", ms=4, color=colours[layer])
                    drawn = True
            axis.grid(True, which="major", alpha=0.3)
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
            if row == len(inits) - 1:
                axis.set_xlabel("epoch (0 = init)")
            if col == 0:
                axis.set_ylabel("weight-gradient norm")
    if drawn:
        legible_log_axis(axes[0][0], table["norm"].to_numpy())  # shared by every panel
        handles = [Line2D([], [], color=colours[layer], marker="o", ms=4) for layer in layers]
        _legend(figure, handles, layers, "layer")
    _title(figure, title)
    _save(figure, path)


def label_lr_axis(axis, lrs: list[float]) -> None:
    """Log x with a tick at exactly each swept lr, labelled plainly; no minor ticks or labels."""
    low, high = min(lrs), max(lrs)
    margin = (high / low) ** 0.08 if high > low else 2.0
    axis.set_xlim(low / margin, high * margin)  # before the log scale: a lone point would give equal limits
    axis.set_xscale("log")
    axis.xaxis.set_major_locator(FixedLocator(lrs))
    axis.xaxis.set_major_formatter(FuncFormatter(_plain))
    axis.xaxis.set_minor_locator(NullLocator())
    axis.xaxis.set_minor_formatter(NullFormatter())
    axis.set_xlim(low / margin, high * margin)
    if len(lrs) > 4:  # upright labels of close lrs run together; vertical ones need only a line's height each
        axis.tick_params(axis="x", labelrotation=90)


def lr_sweep_figure(metrics_list: list[dict[str, Any]], default_lrs: dict[str, float], path: str | Path) -> None:
    """Final validation accuracy vs learning rate (log x, a tick at each swept lr), one panel per optimizer,
    one line per init, the seeds' min-max as a band; the default lr dotted, the chosen lr circled, an lr where
    a seed diverged crossed at the bottom; a panel whose best lr is at the edge of its range says so."""
    title = "Learning-rate sensitivity (mean over seeds, band: min–max; circle: best on validation)"
    table = sweep_table(metrics_list)
    if table.empty:
        _no_data_figure(title, "No sweep runs: nothing to draw.", path)
        return
    summary, best = lr_summary(table), best_learning_rates(table)
    optimizers = list(dict.fromkeys(table["optimizer"]))
    inits = list(dict.fromkeys(table["init"]))
    colours = {init: f"C{i % 10}" for i, init in enumerate(inits)}
    figure, axes = plt.subplots(
        1,
        len(optimizers),
        figsize=(max(6.5, 4.2 * len(optimizers) + 1.5), 4.2),
        sharey=True,
        squeeze=False,
        layout="constrained",
    )
    bottom = None
    for axis, optimizer in zip(axes[0], optimizers):
        rows = summary[summary["optimizer"] == optimizer]
        lrs = sorted(rows["lr"].unique())
        bottom = blended_transform_factory(axis.transData, axis.transAxes)
        for init, group in rows.groupby("init", sort=False):
            colour = colours[init]
            axis.plot(group["lr"], group["val_mean"], marker="o", color=colour)
            axis.fill_between(group["lr"], group["val_min"], group["val_max"], color=colour, alpha=0.2)
            chosen = best[(best["init"] == init) & (best["optimizer"] == optimizer)]["best_lr"].dropna()
            if not chosen.empty:
                at = group[np.isclose(group["lr"], chosen.iloc[0])]
                axis.scatter(at["lr"], at["val_mean"], s=160, facecolors="none", edgecolors=colour, zorder=3)
            lost = group[group["diverged"] > 0]
            axis.scatter(lost["lr"], [0.03] * len(lost), marker="x", color=colour, transform=bottom, clip_on=False)
        if not rows["val_mean"].notna().any():
            axis.text(0.5, 0.5, "every run diverged", ha="center", va="center", transform=axis.transAxes)
        default = number_or_nan(default_lrs.get(optimizer))
        if np.isfinite(default):
            axis.axvline(default, color="grey", linestyle=":")
            lrs = sorted(set(lrs) | {default})
        label_lr_axis(axis, lrs)
        edges = set(best.loc[best["optimizer"] == optimizer, "edge"])
        subtitle = next((f"\n({EDGE_NOTES[edge]})" for edge in EDGE_NOTES if edge in edges), "")
        axis.set_title(f"{optimizer}{subtitle}", fontsize="medium")
        axis.set_xlabel("learning rate")
        axis.grid(True, which="major", alpha=0.3)
    axes[0][0].set_ylabel("final validation accuracy")
    handles = [Line2D([], [], color=colours[init], marker="o", label=f"init {init}") for init in inits] + [
        Line2D([], [], color="grey", linestyle=":", label="default lr"),
        Line2D([], [], color="black", marker="o", markerfacecolor="none", ms=11, linestyle="none", label="best lr"),
        Line2D([], [], color="black", marker="x", linestyle="none", label="a seed diverged"),
    ]
    _legend(figure, handles, [h.get_label() for h in handles], None)
    _title(figure, title)
    _save(figure, path)
