"""findings.md's "Poor results, missed targets and divergence": every run that failed, every combination that
missed the target or was excluded from the best set, and combinations that mixed precisions or devices."""

from __future__ import annotations

import math

import pandas as pd

from fmnist_initopt.aggregate import combination_label
from fmnist_initopt.findings_best import Selection
from fmnist_initopt.findings_comparisons import comparison_text, level_text
from fmnist_initopt.findings_conditions import mixed_condition_lines
from fmnist_initopt.wording import count, number

SUGGESTED_LR_FACTOR = 10


def divergence_lines(frame: pd.DataFrame, counts: pd.DataFrame) -> list[str]:
    lines = []
    all_diverged = [o for o, runs in frame.groupby("optimizer", sort=False) if (runs["status"] == "diverged").all()]
    for optimizer in all_diverged:
        runs = int((frame["optimizer"] == optimizer).sum())
        lines.append(
            f"- **Every run of {optimizer} diverged** ({count(runs, 'run')}): it has no accuracy or speed to report."
        )
    for row in counts.itertuples(index=False):
        if row.n_completed == 0 and row.optimizer not in all_diverged:
            lines.append(
                f"- **{combination_label(row.init, row.optimizer)}**: no completed run ({row.n_diverged} of "
                f"{row.n_seeds} seeds diverged): no accuracy or speed to report."
            )
    for run in frame[frame["status"] == "diverged"].itertuples(index=False):
        where = (
            f"epoch {int(run.diverged_epoch)}, step {int(run.diverged_step)}"
            if math.isfinite(run.diverged_epoch) and math.isfinite(run.diverged_step)
            else "an unrecorded step"
        )
        lines.append(
            f"- **{run.run_id} diverged** (loss not finite at {where}, after {count(int(run.epochs_completed), 'completed epoch')}, "
            f"learning rate {run.lr:g}); left out of every mean and comparison except epochs to target (counted as "
            f"never reached). Suggested fix: lower `optimizers.{run.optimizer}.kwargs.lr` by {SUGGESTED_LR_FACTOR}x, "
            f"to {run.lr / SUGGESTED_LR_FACTOR:g}."
        )
    return lines


def target_lines(frame: pd.DataFrame, target: float) -> list[str]:
    completed = frame[frame["status"] == "completed"]
    if not len(completed):
        return []
    if not frame["reached_target"].any():
        return [f"- **No run reached validation accuracy {target:g}**: see the warning under Convergence speed."]
    lines = []
    for (init, optimizer), runs in completed.groupby(["init", "optimizer"], sort=False):
        missed = runs[~runs["reached_target"].astype(bool)]
        if len(missed):
            lines.append(
                f"- **{combination_label(init, optimizer)}**: {len(missed)} of {len(runs)} completed seeds never "
                f"reached validation accuracy {target:g} within {count(int(runs['epochs'].max()), 'epoch')} (best: "
                f"{number(runs['best_val_accuracy'].max())}). Suggested fix: more epochs (`training.epochs`) or "
                f"a tuned `optimizers.{optimizer}.kwargs.lr` (now {runs['lr'].iloc[0]:g})."
            )
    return lines


def excluded_lines(selection: Selection) -> list[str]:
    best = selection.result
    if best.best is None:
        return []
    return [
        f"- **{level_text(c.level)}** is worse than the best (**{level_text(c.reference)}**) in final validation "
        f"accuracy: {comparison_text(c, stated=best.status)}."
        for c in best.comparisons
        if c.verdict == "different" and c.estimate < 0
    ]


def problems(frame: pd.DataFrame, selection: Selection, target: float) -> list[str]:
    lines = (
        divergence_lines(frame, selection.counts)
        + target_lines(frame, target)
        + excluded_lines(selection)
        + mixed_condition_lines(frame)
    )
    return lines or [
        "- None: no run diverged, every completed run reached the target, no eligible combination is "
        "distinguishable from the best in final validation accuracy, and every combination ran in one precision "
        "on one kind of device."
    ]
