"""findings.md's Convergence speed section: the speed measures, the target's warning, and the init
differences in speed with the report's one decision rule (seed as the unit)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from fmnist_initopt import best
from fmnist_initopt.aggregate import combination_label, median_epochs_to_target
from fmnist_initopt.findings_comparisons import RESULT, comparison_rows, factor_evidence
from fmnist_initopt.wording import count, markdown_table, number

# Per-run speed measures: (label, higher is better, unit, scale to the unit)
SPEED = {
    "mean_val_accuracy": ("mean validation accuracy over epochs", True, "pp", 100.0),
    "epoch1_val_accuracy": ("epoch-1 validation accuracy", True, "pp", 100.0),
    "epochs_to_target_censored": ("epochs to target (never = epochs + 1)", False, "epochs", 1.0),
}


def seeds_text(row) -> str:
    return f"{row.n_completed} / {row.n_diverged}"


def epochs_to_target_text(runs: pd.DataFrame) -> str:
    """The median epochs to target when at least half the runs reached it (the epoch by which half had),
    else "not reached by half the runs"; with how many runs reached it. Never an average with the code that
    stands for "never reached"."""
    if runs.empty:
        return "n/a"
    reached, total = int(runs["reached_target"].sum()), len(runs)
    if not reached:
        return f"never reached (0/{total})"
    median = median_epochs_to_target(runs)
    middle = f"median {median:g}" if median is not None else "not reached by half the runs"
    return f"{middle} (reached {reached}/{total})"


def target_warning(frame: pd.DataFrame, all_metrics: list[dict], target: float) -> str:
    """A warning when epochs-to-target cannot discriminate: most runs reach it in epoch 1, or none reaches it."""
    runs, epochs = len(frame), int(frame["epochs"].max())
    reached = int(frame["reached_target"].sum())
    first = int((frame["epochs_to_target"] == 1).sum())
    completed = [m for m in all_metrics if m["status"] == "completed" and m["history"]["val_accuracy"]]
    if reached == 0:
        if not completed:
            return ""
        best = max(max(m["history"]["val_accuracy"]) for m in completed)
        return (
            f"**Warning: the target does not discriminate: no run reached validation accuracy {target:g}** within "
            f"{count(epochs, 'epoch')} (the highest reached was {best:.4f}). Lower `report.target_accuracy` (or "
            "train more `training.epochs`), so that epochs to target can compare the combinations."
        )
    if first * 2 <= runs:
        return ""
    if epochs < 2:
        advice = "with one epoch, epochs to target can only be 1 or never: train more `training.epochs`"
    else:
        middle = math.ceil(epochs / 2)
        halfway = [
            m["history"]["val_accuracy"][middle - 1] for m in completed if len(m["history"]["val_accuracy"]) >= middle
        ]
        advice = "raise `report.target_accuracy`" + (
            f", e.g. to about {math.floor(float(np.median(halfway)) * 200) / 200:g} (the median validation "
            f"accuracy after epoch {middle}, which half the runs reach by mid-training)"
            if halfway
            else ""
        )
    return (
        f"**Warning: the target does not discriminate: {first} of {runs} runs reached validation accuracy "
        f"{target:g} in epoch 1**, so epochs to target ties almost everything; {advice}. The mean validation "
        "accuracy over epochs and the epoch-1 validation accuracy below still compare the speed."
    )


def fastest_text(frame: pd.DataFrame, confidence: float) -> str:
    """The fastest combinations as a set (highest mean validation accuracy over epochs, and every one the
    max-statistic test cannot separate from it)."""
    fastest = best.best_set(frame, "mean_val_accuracy", "mean_val_accuracy", ["init", "optimizer"], confidence)
    if fastest.best is None:
        return ""
    members = fastest.members[fastest.members["in_set"]].sort_values("select_mean", ascending=False)
    status = "" if fastest.status == "ok" else f" ({fastest.status})"
    listed = ", ".join(
        f"**{combination_label(m.init, m.optimizer)}** ({number(m.select_mean)}"
        + (f"; lost {m.n_dropped} of {m.n_runs} seeds, mean of the rest" if m.n_dropped else "")
        + ")"
        for m in members.itertuples(index=False)
    )
    return (
        "**Fastest combinations** (highest mean validation accuracy over epochs, and every combination not "
        f"distinguishable from it): {listed}{status}."
    )


def speed_section(frame: pd.DataFrame, all_metrics: list[dict], target: float, confidence: float) -> str:
    epochs = int(frame["epochs"].max())
    parts = [
        "## Convergence speed",
        "Primary measures: the **mean validation accuracy over the epochs** (the area under the validation curve "
        "divided by the epochs: higher is faster and better on the way) and the **epoch-1 validation accuracy**. "
        f"Epochs to the target {target:g} is kept, with runs that never reached it counted as censored "
        f"(never = {epochs + 1} epochs), not dropped: the sign-flip test is exact under the null whatever value "
        "never gets, but the estimate understates a difference that involves censored runs. Its median is the "
        "epoch by which half the runs had reached the target, given only when at least half reached it.",
        target_warning(frame, all_metrics, target),
        fastest_text(frame, confidence),
    ]
    if frame["init"].nunique() < 2:
        parts.append("Only one init was trained, so no init comparison of speed is possible.")
        return "\n\n".join(part for part in parts if part)
    rows = []
    for metric, (label, higher_is_better, unit, scale) in SPEED.items():
        found = factor_evidence(frame, metric, "init", confidence, higher_is_better)
        if found.pooled.reference is None:
            status = found.pooled.status
            rows.append({"measure": label, "optimizer": "", "difference": "", RESULT: status})
            continue
        rows += comparison_rows(found, unit, scale, label)
    parts.append(
        "Init differences in speed, the seed as the unit; per measure, one family pooled over the optimizers "
        "and one for the per-optimizer comparisons:"
    )
    parts.append(markdown_table(rows))
    return "\n\n".join(part for part in parts if part)
