"""The report's figures, drawn from the per-run metrics and the aggregated tables.

Every figure uses one colour per optimizer and one line style (and bar hatch) per init. Both are
derived from the names themselves, so a name keeps its look from figure to figure and from study
to study, and names added later through the config (adamw, orthogonal, ...) get one too.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on cluster nodes or CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from fmnist_initopt.aggregate import combination_label  # noqa: E402
from fmnist_initopt.atomic import atomic_path  # noqa: E402
from fmnist_initopt.stats import mean_interval  # noqa: E402

OPTIMIZER_COLOURS = list(plt.get_cmap("tab10").colors)
INIT_LINESTYLES = ["-", "--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3))]
INIT_HATCHES = ["", "//", "xx", "..", "\\\\", "++"]
# The brief's names keep the first, most readable slots (blue/orange/green, solid/dashed);
# any other name gets a slot from a hash of itself.
PREFERRED_SLOTS = {"sgd": 0, "adam": 1, "rmsprop": 2, "he": 0, "xavier": 1}
DPI = 120


def style_slots(names: Iterable[str], slots: int) -> dict[str, int]:
    """A slot per name, the same in every figure and every study: the preferred slot for the
    brief's names, else one from a hash of the name (stable across Python processes), moving to
    the next free slot when taken. Names beyond the number of slots share slots."""
    names = set(names)
    taken: set[int] = set()
    assigned = {}
    for name in sorted(names & PREFERRED_SLOTS.keys()):
        assigned[name] = PREFERRED_SLOTS[name] % slots
        taken.add(assigned[name])
    for name in sorted(names - PREFERRED_SLOTS.keys()):
        slot = int(hashlib.sha256(name.encode()).hexdigest(), 16) % slots
        for _ in range(slots):
            if slot not in taken:
                break
            slot = (slot + 1) % slots
        taken.add(slot)
        assigned[name] = slot
    return assigned


def outside_legend(figure: plt.Figure, handles: list) -> None:
    """One legend to the right of all panels, so it never hides data."""
    figure.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=9, frameon=False)


def optimizer_colours(names: Iterable[str]) -> dict[str, Any]:
    return {name: OPTIMIZER_COLOURS[slot] for name, slot in style_slots(names, len(OPTIMIZER_COLOURS)).items()}


def init_styles(names: Iterable[str]) -> dict[str, dict[str, Any]]:
    return {
        name: {"linestyle": INIT_LINESTYLES[slot], "hatch": INIT_HATCHES[slot]}
        for name, slot in style_slots(names, len(INIT_LINESTYLES)).items()
    }


class Styles:
    """The colour and line style of every combination in one study."""

    def __init__(self, inits: Iterable[str], optimizers: Iterable[str]):
        inits, optimizers = list(dict.fromkeys(inits)), list(dict.fromkeys(optimizers))
        colours, styles = optimizer_colours(optimizers), init_styles(inits)
        # Legends list the names in the study's own (grid) order.
        self.colour = {name: colours[name] for name in optimizers}
        self.init = {name: styles[name] for name in inits}

    def line(self, init: str, optimizer: str) -> dict[str, Any]:
        return {"color": self.colour[optimizer], "linestyle": self.init[init]["linestyle"], "linewidth": 2}

    def bar(self, init: str, optimizer: str) -> dict[str, Any]:
        return {
            "color": self.colour[optimizer],
            "hatch": self.init[init]["hatch"],
            "edgecolor": "black",
            "linewidth": 0.8,
        }

    def legend_handles(self, kind: str) -> list:
        """Optimizers as colour patches, inits as line styles (kind='line') or hatches (kind='bar')."""
        handles: list = [Patch(facecolor=colour, label=name) for name, colour in self.colour.items()]
        for name, style in self.init.items():
            if kind == "line":
                handles.append(Line2D([], [], color="black", linestyle=style["linestyle"], linewidth=2, label=name))
            else:
                handles.append(Patch(facecolor="white", edgecolor="black", hatch=style["hatch"], label=name))
        return handles


def styles_for(combinations: pd.DataFrame) -> Styles:
    return Styles(combinations["init"], combinations["optimizer"])


def save(figure: plt.Figure, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(figure)


def _completed_histories(all_metrics: list[dict], init: str, optimizer: str) -> list[dict]:
    return [
        m["history"]
        for m in all_metrics
        if m["run"]["init"] == init and m["run"]["optimizer"] == optimizer and m["status"] == "completed"
    ]


def _mean_and_band(curves: list[list[float]], confidence: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    values = np.asarray(curves, dtype=float)
    bands = np.array([mean_interval(values[:, epoch], confidence) for epoch in range(values.shape[1])])
    return values.mean(axis=0), bands[:, 0], bands[:, 1]


def learning_curves(
    all_metrics: list[dict], combinations: pd.DataFrame, target_accuracy: float, confidence: float, path: str | Path
) -> None:
    """Training loss and validation accuracy per epoch: mean over completed seeds, CI band when >= 2 seeds."""
    styles = styles_for(combinations)
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(13, 5))
    seeds = set()
    for init, optimizer in combinations[["init", "optimizer"]].itertuples(index=False):
        histories = _completed_histories(all_metrics, init, optimizer)
        if not histories:
            continue
        seeds.add(len(histories))
        epochs = histories[0]["epoch"]
        for axis, key in ((loss_axis, "train_loss"), (accuracy_axis, "val_accuracy")):
            mean, low, high = _mean_and_band([h[key] for h in histories], confidence)
            style = styles.line(init, optimizer)
            axis.plot(epochs, mean, marker="o", markersize=4, label=combination_label(init, optimizer), **style)
            if not np.isnan(low).all():
                axis.fill_between(epochs, low, high, color=style["color"], alpha=0.15, linewidth=0)
    accuracy_axis.margins(y=0.08)
    target_line = accuracy_axis.axhline(
        target_accuracy, color="grey", linewidth=1, linestyle=(0, (2, 2)), label=f"target accuracy {target_accuracy:g}"
    )
    loss_axis.set(xlabel="epoch", ylabel="training loss (mean cross-entropy, nats)", title="Training loss")
    accuracy_axis.set(xlabel="epoch", ylabel="validation accuracy (fraction correct)", title="Validation accuracy")
    for axis in (loss_axis, accuracy_axis):
        axis.grid(True, alpha=0.3)
        axis.xaxis.get_major_locator().set_params(integer=True)
    band = (
        f"shaded: {confidence:.0%} CI of the mean" if max(seeds, default=1) > 1 else "one seed per combination: no band"
    )
    figure.suptitle(f"Learning curves, mean over seeds ({band})")
    figure.tight_layout()
    handles, _ = loss_axis.get_legend_handles_labels()
    outside_legend(figure, [*handles, target_line])
    save(figure, path)


def _bar_axis(axis, combinations: pd.DataFrame, metric: str, styles: Styles, summary: pd.DataFrame) -> None:
    """Bars of a metric's mean per combination with CI error bars and each seed as a dot."""
    positions = np.arange(len(combinations))
    for position, row in zip(positions, combinations.itertuples(index=False)):
        mean = getattr(row, f"{metric}_mean")
        if math.isnan(mean):
            continue
        low, high = getattr(row, f"{metric}_ci_low"), getattr(row, f"{metric}_ci_high")
        errors = None if math.isnan(low) else [[mean - low], [high - mean]]
        axis.bar(position, mean, width=0.7, yerr=errors, capsize=5, **styles.bar(row.init, row.optimizer))
        seeds = summary[
            (summary["init"] == row.init) & (summary["optimizer"] == row.optimizer) & (summary["status"] == "completed")
        ][metric].dropna()
        axis.plot(np.full(len(seeds), position), seeds, "o", color="black", markersize=3, zorder=3)
    axis.set_xticks(positions, combinations["combination"], rotation=30, ha="right")
    axis.set_xlim(-0.6, len(combinations) - 0.4)  # every combination keeps its slot, with or without a bar
    axis.grid(True, axis="y", alpha=0.3)


def _label_missing(axis, combinations: pd.DataFrame, metric: str, text: str) -> None:
    for position, row in enumerate(combinations.itertuples(index=False)):
        if math.isnan(getattr(row, f"{metric}_mean")):
            axis.text(
                position,
                0.02,
                text,
                transform=axis.get_xaxis_transform(),
                ha="center",
                va="bottom",
                rotation=90,
                fontsize=9,
                color="firebrick",
            )


def _data_limits(combinations: pd.DataFrame, summary: pd.DataFrame, metric: str) -> tuple[float, float] | None:
    values = pd.concat(
        [combinations[f"{metric}_{part}"] for part in ("mean", "ci_low", "ci_high")] + [summary[metric]]
    ).dropna()
    if values.empty:
        return None
    low, high = float(values.min()), float(values.max())
    pad = max((high - low) * 0.15, 0.005)
    return low - pad, high + pad


def _completion_labels(axis, combinations: pd.DataFrame, count: str) -> None:
    """ "k/n" above every slot: how many seeds completed (or reached the target), so no lost seed goes unseen."""
    for position, row in enumerate(combinations.itertuples(index=False)):
        axis.text(
            position,
            1.01,
            f"{getattr(row, count)}/{row.n_seeds}",
            transform=axis.get_xaxis_transform(),
            ha="center",
            va="bottom",
            fontsize=9,
        )
    axis.set_title(axis.get_title(), pad=18)


def _zoom_to_accuracy(axis, combinations: pd.DataFrame, summary: pd.DataFrame, metric: str) -> None:
    limits = _data_limits(combinations, summary, metric)
    if limits:
        axis.set_ylim(max(limits[0], 0), min(limits[1], 1))


def accuracy_and_time(summary: pd.DataFrame, combinations: pd.DataFrame, confidence: float, path: str | Path) -> None:
    """The brief's bar chart: final test accuracy (CI error bars) and the runs' own time per combination.

    The time panel shows process CPU time when the runs recorded it, else wall time; either way it describes
    runs that may have shared the machine, so the title says it is not a cost ranking."""
    styles = styles_for(combinations)
    figure, (accuracy_axis, time_axis) = plt.subplots(1, 2, figsize=(13, 5.5))
    _bar_axis(accuracy_axis, combinations, "test_accuracy", styles, summary)
    _zoom_to_accuracy(accuracy_axis, combinations, summary, "test_accuracy")
    accuracy_axis.set(
        ylabel="test accuracy (fraction correct)", title="Final test accuracy (y-axis zoomed to the data)"
    )
    cpu = "process_cpu_seconds_mean" in combinations and combinations["process_cpu_seconds_mean"].notna().any()
    time_metric = "process_cpu_seconds" if cpu else "training_seconds"
    _bar_axis(time_axis, combinations, time_metric, styles, summary)
    time_axis.set(
        ylabel="process CPU time (s)" if cpu else "training wall time (s, training + validation)",
        title=("Process CPU time" if cpu else "Training wall time")
        + " of the runs\n(runs may overlap: not a cost ranking)",
    )
    for axis, metric in ((accuracy_axis, "test_accuracy"), (time_axis, time_metric)):
        _label_missing(axis, combinations, metric, "diverged: no value")
        _completion_labels(axis, combinations, "n_completed")
    multi_seed = combinations["n_completed"].max() > 1
    whiskers = f"error bars: {confidence:.0%} CI of the mean" if multi_seed else "one seed: no error bars"
    figure.suptitle(f"Accuracy and time per combination (dots: single seeds; {whiskers}; numbers: seeds completed)")
    figure.tight_layout()
    outside_legend(figure, styles.legend_handles("bar"))
    save(figure, path)


def _epochs_to_target_axis(axis, summary: pd.DataFrame, combinations: pd.DataFrame, styles: Styles) -> None:
    """Median epochs to target per combination with never-reached runs censored at epochs + 1 (drawn as x)."""
    epochs = int(summary["epochs"].max())
    for position, row in enumerate(combinations.itertuples(index=False)):
        runs = summary[(summary["init"] == row.init) & (summary["optimizer"] == row.optimizer)]
        censored = runs["epochs_to_target_censored"].to_numpy(dtype=float)
        if not len(censored):
            continue
        median = float(np.median(censored))
        if median <= epochs:
            axis.bar(position, median, width=0.7, **styles.bar(row.init, row.optimizer))
        reached = censored[censored <= epochs]
        axis.plot(np.full(len(reached), position), reached, "o", color="black", markersize=3, zorder=3)
        never = len(censored) - len(reached)
        if never:
            axis.plot([position], [epochs + 1], "x", color="firebrick", markersize=8, zorder=3)
    axis.axhline(epochs + 1, color="firebrick", linewidth=1, linestyle=(0, (2, 2)))
    axis.text(
        0.0,
        epochs + 1,
        " never (censored)",
        color="firebrick",
        va="bottom",
        fontsize=9,
        transform=axis.get_yaxis_transform(),
    )
    axis.set_xticks(range(len(combinations)), combinations["combination"], rotation=30, ha="right")
    axis.set_xlim(-0.6, len(combinations) - 0.4)
    axis.set_ylim(0, epochs + 1.8)
    axis.yaxis.get_major_locator().set_params(integer=True)
    axis.grid(True, axis="y", alpha=0.3)


def epochs_to_target(
    summary: pd.DataFrame, combinations: pd.DataFrame, target_accuracy: float, confidence: float, path: str | Path
) -> None:
    """Convergence speed three ways: epochs to the target (censored), epoch-1 and mean validation accuracy."""
    styles = styles_for(combinations)
    figure, (epoch_axis, first_axis, mean_axis) = plt.subplots(1, 3, figsize=(17, 5.5))
    _epochs_to_target_axis(epoch_axis, summary, combinations, styles)
    epoch_axis.set(ylabel="epochs to target (bar: median; dots: seeds)", title=f"Epochs to {target_accuracy:g}")
    _completion_labels(epoch_axis, combinations, "n_reached_target")
    for axis, metric, title in (
        (first_axis, "epoch1_val_accuracy", "Validation accuracy after epoch 1"),
        (mean_axis, "mean_val_accuracy", "Mean validation accuracy over epochs"),
    ):
        _bar_axis(axis, combinations, metric, styles, summary)
        _zoom_to_accuracy(axis, combinations, summary, metric)
        axis.set(ylabel="validation accuracy (fraction correct)", title=title)
        _label_missing(axis, combinations, metric, "no completed run")
        _completion_labels(axis, combinations, "n_completed")
    if not summary["reached_target"].any():
        epoch_axis.text(
            0.5,
            0.5,
            f"no run reached validation accuracy {target_accuracy:g}",
            transform=epoch_axis.transAxes,
            ha="center",
            va="center",
            fontsize=11,
            color="firebrick",
        )
    multi_seed = combinations["n_completed"].max() > 1
    whiskers = f"error bars: {confidence:.0%} CI of the mean" if multi_seed else "one seed: no error bars"
    figure.suptitle(
        f"Convergence speed (numbers above: seeds that reached {target_accuracy:g}, or completed; {whiskers})"
    )
    figure.tight_layout()
    outside_legend(figure, styles.legend_handles("bar"))
    save(figure, path)


def init_weights(all_metrics: list[dict], path: str | Path) -> None:
    """Per-layer weight histograms right after initialisation, one curve per init (its first run)."""
    first_run: dict[str, dict] = {}
    for metrics in sorted(all_metrics, key=lambda m: m["run"]["seed"]):
        first_run.setdefault(metrics["run"]["init"], metrics)
    styles = init_styles(first_run)
    layers = [stat["layer"] for stat in next(iter(first_run.values()))["init_weight_stats"]]
    figure, axes = plt.subplots(1, len(layers), figsize=(4 * len(layers), 4), squeeze=False)
    for axis, layer in zip(axes[0], layers):
        for init, metrics in first_run.items():
            stat = next(s for s in metrics["init_weight_stats"] if s["layer"] == layer)
            edges = np.asarray(stat["histogram"]["edges"])
            counts = np.asarray(stat["histogram"]["counts"], dtype=float)
            density = counts / (counts.sum() * np.diff(edges))
            axis.stairs(
                density,
                edges,
                linestyle=styles[init]["linestyle"],
                linewidth=2,
                color="black",
                label=f"{init}: std {stat['std']:.3g}",
            )
        axis.set(
            title=f"{layer} {tuple(stat['shape'])}, fan-in {stat['fan_in']}",
            xlabel="weight value",
            ylabel="probability density",
        )
        axis.legend(fontsize=8)
        axis.grid(True, alpha=0.3)
    seeds = ", ".join(f"{init} seed {m['run']['seed']}" for init, m in first_run.items())
    figure.suptitle(f"Weights right after initialisation, per layer ({seeds})")
    figure.tight_layout()
    save(figure, path)
