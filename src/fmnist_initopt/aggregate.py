"""From the runs' metrics.json files to two tables: one row per run, one row per (init, optimizer).

Diverged runs stay in the per-run table (so they can be reported) but are left out of every mean,
standard deviation and interval: their accuracy and time describe a failure, not the combination.
Convergence speed has three per-run measures: the mean validation accuracy over the epochs (the area
under the validation curve divided by the epochs), the validation accuracy after epoch 1, and the
epochs to the target accuracy. A run that never reaches the target has no epochs-to-target (NaN) but a
censored value, `epochs_to_target_censored` = epochs + 1, so comparisons count it instead of dropping it.
Cost: what each run measured about itself (process CPU time, median step time, the load it ran under)
is copied when present; wall times of runs that shared the machine are kept as data, never ranked.
Generalization: the final evaluation pass over the training images (`train_evaluation`) against the test
result; runs recorded before that pass existed have NaN there. Conditions: the precisions and devices a
run's epochs used (`history.precision`, `history.device`), "" when the run did not record them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fmnist_initopt.atomic import atomic_path
from fmnist_initopt.stats import mean_interval

# Per-run metrics summarised per combination, and whether larger values are better.
METRICS = {
    "test_accuracy": True,
    "best_val_accuracy": True,
    "final_val_accuracy": True,
    "mean_val_accuracy": True,
    "epoch1_val_accuracy": True,
    "epochs_to_target": False,
    "train_accuracy": True,
    "generalization_gap": False,
    "seconds_to_target": False,
    "training_seconds": False,
    "process_cpu_seconds": False,
}
IDENTITY = ["init", "optimizer"]
# torch.optim classes that scale each parameter's step by its own gradient history ("adaptive" in the brief).
ADAPTIVE_OPTIMIZERS = frozenset({"Adadelta", "Adagrad", "Adam", "Adamax", "AdamW", "NAdam", "RAdam", "RMSprop"})
# Per-run metrics that describe a combination only when the run completed; a diverged run's partial curve or
# missing test result must not count. Epochs to target keeps every run (never reached = censored).
COMPLETED_ONLY = [
    "test_accuracy",
    "final_val_accuracy",
    "best_val_accuracy",
    "mean_val_accuracy",
    "epoch1_val_accuracy",
    "train_accuracy",
    "generalization_gap",
    "loss_gap",
]
# The per-run block each metrics.json may carry about its own cost (absent in older files), and its columns.
COST_FIELDS = {
    "process_cpu_seconds": "process_cpu_seconds",
    "median_step_seconds": "median_step_seconds",
    "steps_timed": "steps_timed",
    "load_average_start": "load_average_start",
    "load_average_end": "load_average_end",
    "cpu_count": "cpu_count",
    "threads": "cost_threads",
}


def load_metrics(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    return [json.loads(Path(path).read_text()) for path in paths]


def first_epoch_reaching(val_accuracy: list[float], target: float) -> int | None:
    """1-based epoch whose validation accuracy first reaches `target`, or None."""
    for epoch, accuracy in enumerate(val_accuracy, start=1):
        if accuracy >= target:
            return epoch
    return None


def run_row(metrics: dict[str, Any], target_accuracy: float) -> dict[str, Any]:
    history = metrics["history"]
    val_accuracy = history["val_accuracy"]
    epochs = metrics["spec"]["epochs"]
    reached = first_epoch_reaching(val_accuracy, target_accuracy)
    divergence = metrics["divergence"] or {}
    hyperparameters = metrics["hyperparameters"]
    steps_per_epoch = math.ceil(metrics["data"]["train"] / metrics["spec"]["batch_size"])
    cost = metrics.get("cost") or {}
    train_evaluation = metrics.get("train_evaluation") or {}
    test_accuracy = _nan_if_none(metrics["test"]["accuracy"])
    train_accuracy = _nan_if_none(train_evaluation.get("accuracy"))
    test_loss, train_loss = _nan_if_none(metrics["test"].get("loss")), _nan_if_none(train_evaluation.get("loss"))
    return {
        "run_id": metrics["run"]["id"],
        "init": metrics["run"]["init"],
        "optimizer": metrics["run"]["optimizer"],
        "seed": metrics["run"]["seed"],
        "status": metrics["status"],
        "optimizer_class": metrics["spec"]["optimizer_class"],
        "adaptive": metrics["spec"]["optimizer_class"] in ADAPTIVE_OPTIMIZERS,
        "lr": hyperparameters["lr"],
        "hyperparameters": json.dumps(hyperparameters, sort_keys=True),
        "epochs": epochs,
        "epochs_completed": len(history["epoch"]),
        "test_accuracy": test_accuracy,
        "test_loss": test_loss,
        "train_accuracy": train_accuracy,
        "train_loss_final": train_loss,
        # Training minus test accuracy, and test minus training loss: positive when the test images fare worse.
        "generalization_gap": train_accuracy - test_accuracy,
        "loss_gap": test_loss - train_loss,
        "best_val_accuracy": max(val_accuracy, default=math.nan),
        "final_val_accuracy": val_accuracy[-1] if val_accuracy else math.nan,
        # Area under the validation curve / epochs: only a full curve is comparable with the others.
        "mean_val_accuracy": sum(val_accuracy) / len(val_accuracy)
        if val_accuracy and len(val_accuracy) == epochs
        else math.nan,
        "epoch1_val_accuracy": val_accuracy[0] if val_accuracy else math.nan,
        "epochs_to_target": math.nan if reached is None else reached,
        "epochs_to_target_censored": epochs + 1 if reached is None else reached,
        "steps_per_epoch": steps_per_epoch,
        "steps_to_target": math.nan if reached is None else reached * steps_per_epoch,
        # Wall time until the target was first met: every epoch up to and including that one.
        "seconds_to_target": math.nan if reached is None else float(sum(history["epoch_seconds"][:reached])),
        "training_seconds": metrics["training_seconds"],
        **{column: _nan_if_none(cost.get(field)) for field, column in COST_FIELDS.items()},
        "diverged_epoch": divergence.get("epoch", math.nan),
        "diverged_step": divergence.get("step", math.nan),
        "run_precision": metrics.get("precision", ""),
        "run_device": metrics.get("environment", {}).get("device", ""),
        "epoch_precisions": _epoch_values(history, "precision"),
        "epoch_devices": _epoch_values(history, "device"),
    }


def _epoch_values(history: dict[str, Any], key: str) -> str:
    """The values a per-epoch record took, in order of first use and joined by "/" ("fp32", "bf16/fp32");
    "" when the run did not record it (older metrics files)."""
    values = history.get(key)
    return "/".join(dict.fromkeys(map(str, values))) if values else ""


def _nan_if_none(value):
    return math.nan if value is None else value


def summarize_runs(all_metrics: list[dict[str, Any]], target_accuracy: float) -> pd.DataFrame:
    """One row per run, in the order given (the grid's order when the workflow passes the files)."""
    if not all_metrics:
        raise ValueError("no metrics to summarise: the study has no runs (check grid in the config)")
    summary = pd.DataFrame([run_row(metrics, target_accuracy) for metrics in all_metrics])
    summary["reached_target"] = summary["epochs_to_target"].notna()
    return summary


def combine(summary: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """One row per (init, optimizer), in order of first appearance: counts, then mean, std and CI per metric.

    The interval is descriptive (stats.mean_interval, Student-t over completed seeds); no verdict is drawn from
    two intervals overlapping or not: comparisons are paired tests in findings.md.
    """
    rows = []
    for (init, optimizer), runs in summary.groupby(IDENTITY, sort=False):
        completed = runs[runs["status"] == "completed"]
        row: dict[str, Any] = {
            "init": init,
            "optimizer": optimizer,
            "combination": combination_label(init, optimizer),
            "n_seeds": len(runs),
            "n_completed": len(completed),
            "n_diverged": int((runs["status"] == "diverged").sum()),
            # Every run whose validation accuracy reached the target, a later-diverged one included.
            "n_reached_target": int(runs["reached_target"].sum()),
            "lr": runs["lr"].iloc[0],
        }
        for metric in METRICS:
            values = completed[metric].dropna()
            low, high = mean_interval(values, confidence)
            row[f"{metric}_mean"] = values.mean() if len(values) else math.nan
            row[f"{metric}_std"] = values.std(ddof=1) if len(values) > 1 else math.nan
            row[f"{metric}_ci_low"] = low
            row[f"{metric}_ci_high"] = high
            row[f"{metric}_n"] = len(values)
        rows.append(row)
    return pd.DataFrame(rows)


def median_epochs_to_target(runs: pd.DataFrame) -> float | None:
    """The first epoch by which at least half of `runs` had reached the target (the median time to the
    target, counting runs that never reached it as not yet there), or None when fewer than half reached it.
    It is always an epoch some run reached the target in: the censoring code (epochs + 1) is never averaged."""
    reached = np.sort(runs["epochs_to_target"].to_numpy(dtype=float))
    reached = reached[np.isfinite(reached)]
    half = math.ceil(len(runs) / 2)
    return float(reached[half - 1]) if len(runs) and len(reached) >= half else None


def analysed(summary: pd.DataFrame) -> pd.DataFrame:
    """The per-run table as every test sees it: completed-run metrics blanked for runs that did not complete."""
    frame = summary.copy()
    incomplete = frame["status"] != "completed"
    for column in COMPLETED_ONLY:
        if column in frame:
            frame.loc[incomplete, column] = math.nan
    return frame


def combination_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (init, optimizer), in grid order: seeds, completed, diverged."""
    status = frame.assign(
        completed=frame["status"] == "completed",
        diverged=frame["status"] == "diverged",
    ).groupby(IDENTITY, sort=False)
    return pd.DataFrame(
        {
            "n_seeds": status.size(),
            "n_completed": status["completed"].sum().astype(int),
            "n_diverged": status["diverged"].sum().astype(int),
        }
    ).reset_index()


def combination_label(init: str, optimizer: str) -> str:
    return f"{init} + {optimizer}"


def write_csv(table: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def read_csv(path: str | Path) -> pd.DataFrame:
    return pd.read_csv(path)
