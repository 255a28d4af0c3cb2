"""From the runs' metrics.json files to two tables: one row per run, one row per (init, optimizer).

Diverged runs stay in the per-run table (so they can be reported) but are left out of every mean,
standard deviation and interval: their accuracy and time describe a failure, not the combination.
A run that never reaches the target accuracy has no epochs- or seconds-to-target (NaN); the
combination table counts those runs, and its means cover only the runs that did reach the target.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from fmnist_initopt.atomic import atomic_path

# Per-run metrics summarised per combination, and whether larger values are better.
METRICS = {
    "test_accuracy": True,
    "best_val_accuracy": True,
    "final_val_accuracy": True,
    "epochs_to_target": False,
    "seconds_to_target": False,
    "training_seconds": False,
}
IDENTITY = ["init", "optimizer"]


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
    reached = first_epoch_reaching(history["val_accuracy"], target_accuracy)
    divergence = metrics["divergence"] or {}
    hyperparameters = metrics["hyperparameters"]
    return {
        "run_id": metrics["run"]["id"],
        "init": metrics["run"]["init"],
        "optimizer": metrics["run"]["optimizer"],
        "seed": metrics["run"]["seed"],
        "status": metrics["status"],
        "lr": hyperparameters["lr"],
        "hyperparameters": json.dumps(hyperparameters, sort_keys=True),
        "epochs": metrics["spec"]["epochs"],
        "epochs_completed": len(history["epoch"]),
        "test_accuracy": _nan_if_none(metrics["test"]["accuracy"]),
        "best_val_accuracy": max(history["val_accuracy"], default=math.nan),
        "final_val_accuracy": history["val_accuracy"][-1] if history["val_accuracy"] else math.nan,
        "epochs_to_target": math.nan if reached is None else reached,
        # Wall time until the target was first met: every epoch up to and including that one.
        "seconds_to_target": math.nan if reached is None else float(sum(history["epoch_seconds"][:reached])),
        "training_seconds": metrics["training_seconds"],
        "diverged_epoch": divergence.get("epoch", math.nan),
        "diverged_step": divergence.get("step", math.nan),
    }


def _nan_if_none(value):
    return math.nan if value is None else value


def summarize_runs(all_metrics: list[dict[str, Any]], target_accuracy: float) -> pd.DataFrame:
    """One row per run, in the order given (the grid's order when the workflow passes the files)."""
    if not all_metrics:
        raise ValueError("no metrics to summarise: the study has no runs (check grid in the config)")
    summary = pd.DataFrame([run_row(metrics, target_accuracy) for metrics in all_metrics])
    summary["reached_target"] = summary["epochs_to_target"].notna()
    return summary


def confidence_interval(values: Iterable[float], confidence: float) -> tuple[float, float]:
    """Student-t interval of the mean; NaN bounds when fewer than two values (no spread to estimate)."""
    sample = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if len(sample) < 2:
        return math.nan, math.nan
    mean, sem = sample.mean(), stats.sem(sample)
    if sem == 0:
        return float(mean), float(mean)
    low, high = stats.t.interval(confidence, len(sample) - 1, loc=mean, scale=sem)
    return float(low), float(high)


def combine(summary: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """One row per (init, optimizer), in order of first appearance: counts, then mean, std and CI per metric."""
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
            "n_reached_target": int(completed["reached_target"].sum()),
            "lr": runs["lr"].iloc[0],
        }
        for metric in METRICS:
            values = completed[metric].dropna()
            low, high = confidence_interval(values, confidence)
            row[f"{metric}_mean"] = values.mean() if len(values) else math.nan
            row[f"{metric}_std"] = values.std(ddof=1) if len(values) > 1 else math.nan
            row[f"{metric}_ci_low"] = low
            row[f"{metric}_ci_high"] = high
            row[f"{metric}_n"] = len(values)
        rows.append(row)
    return pd.DataFrame(rows)


def combination_label(init: str, optimizer: str) -> str:
    return f"{init} + {optimizer}"


def values_of(summary: pd.DataFrame, init: str, optimizer: str, metric: str) -> np.ndarray:
    """A metric's per-seed values for one combination, from completed runs only (as in the means)."""
    runs = summary[(summary["init"] == init) & (summary["optimizer"] == optimizer) & (summary["status"] == "completed")]
    return runs[metric].dropna().to_numpy(dtype=float)


def welch(a: np.ndarray, b: np.ndarray, confidence: float) -> dict[str, float]:
    """mean(a) - mean(b), its Welch confidence interval and two-sided p-value.

    NaN interval and p when either side has fewer than two values. When neither side varies
    at all (e.g. every seed reached the target in the same epoch) the t statistic is undefined;
    the difference is then exact ("exact": True): p = 1 if the values agree, else 0.
    """
    difference = float(np.mean(a) - np.mean(b)) if len(a) and len(b) else math.nan
    result = {"difference": difference, "ci_low": math.nan, "ci_high": math.nan, "p_value": math.nan, "exact": False}
    if len(a) < 2 or len(b) < 2:
        return result
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        exact = {"ci_low": difference, "ci_high": difference, "p_value": 1.0 if difference == 0 else 0.0, "exact": True}
        return {**result, **exact}
    with warnings.catch_warnings():
        # One exactly constant side (common for epochs-to-target) is fine for Welch, but scipy warns about it.
        if np.ptp(a) == 0 or np.ptp(b) == 0:
            warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
        test = stats.ttest_ind(a, b, equal_var=False)
    interval = test.confidence_interval(confidence_level=confidence)
    return {**result, "ci_low": float(interval.low), "ci_high": float(interval.high), "p_value": float(test.pvalue)}


def distinguishable(
    a: np.ndarray,
    b: np.ndarray,
    interval_a: tuple[float, float],
    interval_b: tuple[float, float],
    confidence: float,
) -> bool | None:
    """True only when both the per-combination intervals are disjoint and Welch's p < 1 - confidence.

    None when there is no spread to judge by (fewer than two values on a side).
    """
    test = welch(a, b, confidence)
    if math.isnan(test["p_value"]) or any(math.isnan(bound) for bound in (*interval_a, *interval_b)):
        return None
    disjoint = interval_a[1] < interval_b[0] or interval_b[1] < interval_a[0]
    return disjoint and test["p_value"] < 1 - confidence


def write_csv(table: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def read_csv(path: str | Path) -> pd.DataFrame:
    return pd.read_csv(path)
