"""Signal-propagation analysis: the tables and tests, pure functions of metrics.json dictionaries (their
`diagnostics`); `signal_findings` writes them as the findings' section.

At initialisation the snapshot depends on the init and the seed only (not on the optimizer), so
each (init, seed) is counted once. "Weaker signal" means the smaller activation std at the last
layer (the logits) at initialisation, averaged over seeds: the signal that reaches the output.

Every function accepts any set of runs: runs that diverged before their first epoch ended (empty
history), runs without diagnostics, one init, one optimizer, one seed, identical values: what cannot be
measured is NaN and what cannot be tested is an untestable comparison saying why, never an error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fmnist_initopt import levels, power, stats
from fmnist_initopt.findings_comparisons import detectable

SIGNAL_COLUMNS = ["init", "seed", "depth", "layer", "activation_std", "weight_grad_norm"]
SUMMARY_COLUMNS = [
    "init",
    "depth",
    "layer",
    "activation_std",
    "activation_std_min",
    "activation_std_max",
    "weight_grad_norm",
    "weight_grad_norm_min",
    "weight_grad_norm_max",
]
RATIO_COLUMNS = [
    "init",
    "first_layer",
    "last_layer",
    "first_std",
    "last_std",
    "ratio_mean",
    "ratio_min",
    "ratio_max",
    "seeds",
]
EPOCH1_COLUMNS = ["run_id", "init", "optimizer", "seed", "lr", "status", "epoch1_val_accuracy"]


def number_or_nan(value: Any) -> float:
    """A recorded number as a float; null (a non-finite value when recorded) or garbage as NaN."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def usable_diagnostics(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """The run's diagnostics record if it names at least one layer, else None (an older run, or none recorded)."""
    found = metrics.get("diagnostics")
    if not isinstance(found, dict) or not found.get("layers"):
        return None
    return found


def _at_init(series: dict[str, list], layer: str) -> float:
    values = (series or {}).get(layer) or []
    return number_or_nan(values[0]) if values else math.nan


def init_signal_table(metrics_list: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (init, seed, layer) at initialisation: activation std and weight-gradient norm.
    Runs without diagnostics are skipped; a missing or null value is NaN."""
    rows, seen = [], set()
    for metrics in metrics_list:
        found = usable_diagnostics(metrics)
        key = (metrics["run"]["init"], metrics["run"]["seed"])
        if found is None or key in seen:
            continue
        seen.add(key)
        for depth, layer in enumerate(found["layers"]):
            rows.append(
                {
                    "init": key[0],
                    "seed": key[1],
                    "depth": depth,
                    "layer": layer,
                    "activation_std": _at_init(found.get("activation_std"), layer),
                    "weight_grad_norm": _at_init(found.get("weight_grad_norm"), layer),
                }
            )
    return pd.DataFrame(rows, columns=SIGNAL_COLUMNS).astype({"activation_std": float, "weight_grad_norm": float})


def layer_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per (init, layer), in network order: mean, min and max over seeds of both quantities."""
    if table.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    grouped = table.groupby(["init", "depth", "layer"])
    summary = grouped.agg(
        activation_std=("activation_std", "mean"),
        activation_std_min=("activation_std", "min"),
        activation_std_max=("activation_std", "max"),
        weight_grad_norm=("weight_grad_norm", "mean"),
        weight_grad_norm_min=("weight_grad_norm", "min"),
        weight_grad_norm_max=("weight_grad_norm", "max"),
    )
    return summary.reset_index().sort_values(["init", "depth"]).reset_index(drop=True)


def signal_ratios(table: pd.DataFrame) -> pd.DataFrame:
    """Per init: last-layer over first-layer activation std at init (per seed, then mean/min/max)
    and the mean last-layer std. A zero or missing first-layer std gives a NaN ratio, not an error."""
    rows = []
    for init, group in table.groupby("init", sort=True):
        first, last = group["depth"].min(), group["depth"].max()
        by_seed = group.groupby(["seed", "depth"])["activation_std"].mean().unstack("depth")
        by_seed = by_seed.reindex(columns=[first, last])
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = (by_seed[last] / by_seed[first]).replace([np.inf, -np.inf], np.nan)
        rows.append(
            {
                "init": init,
                "first_layer": group.loc[group["depth"] == first, "layer"].iloc[0],
                "last_layer": group.loc[group["depth"] == last, "layer"].iloc[0],
                "first_std": by_seed[first].mean(),
                "last_std": by_seed[last].mean(),
                "ratio_mean": ratio.mean(),
                "ratio_min": ratio.min(),
                "ratio_max": ratio.max(),
                "seeds": int(by_seed.index.nunique()),
            }
        )
    return pd.DataFrame(rows, columns=RATIO_COLUMNS)


def weak_and_strong(ratios: pd.DataFrame) -> tuple[str, str] | None:
    """(init with the weakest logits std, init with the strongest), or None when fewer than two inits have a
    finite one or they all send the same signal (then there is no weaker init to test)."""
    known = ratios[np.isfinite(ratios["last_std"].astype(float))]
    if len(known) < 2:
        return None
    low, high = known["last_std"].min(), known["last_std"].max()
    if math.isclose(low, high, rel_tol=1e-9, abs_tol=0.0):
        return None
    return str(known.loc[known["last_std"].idxmin(), "init"]), str(known.loc[known["last_std"].idxmax(), "init"])


def epoch1_table(metrics_list: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per run: its validation accuracy after epoch 1, NaN when it never finished epoch 1 (diverged)."""
    rows = []
    for metrics in metrics_list:
        history = metrics.get("history") or {}
        accuracies = history.get("val_accuracy") or []
        rows.append(
            {
                "run_id": metrics["run"].get("id", f"{metrics['run']['init']}_{metrics['run']['optimizer']}"),
                "init": metrics["run"]["init"],
                "optimizer": metrics["run"]["optimizer"],
                "seed": metrics["run"]["seed"],
                "lr": number_or_nan(((metrics.get("spec") or {}).get("optimizer_kwargs") or {}).get("lr")),
                "status": metrics.get("status", "completed"),
                "epoch1_val_accuracy": number_or_nan(accuracies[0]) if accuracies else math.nan,
            }
        )
    return pd.DataFrame(rows, columns=EPOCH1_COLUMNS).astype({"epoch1_val_accuracy": float})


@dataclass(frozen=True)
class FirstEpoch:
    """Weak - strong init in epoch-1 validation accuracy, the seed as the unit: pooled over optimizers (each
    seed's difference averaged over them; a family of one) and per optimizer (one Holm family across them)."""

    weak: str
    strong: str
    pooled: stats.Comparison
    pooled_mde: power.DetectableEffect | None
    per_optimizer: pd.DataFrame  # optimizer, weak/strong mean and run counts, comparison, mde, verdict


def epoch1_verdict(comparison: stats.Comparison) -> str:
    """The epoch-1 verdict of the weak init in words: slower / faster only when the rule says different."""
    if comparison.verdict == "different":
        return "slower" if comparison.estimate < 0 else "faster"
    return comparison.verdict


def _weak_minus_strong(found: levels.LevelComparison, weak: str, strong: str, alpha: float) -> stats.Comparison:
    """The weak - strong record of one scope's comparison, or an untestable one saying why there is none."""
    chosen = [c for c in found.comparisons if c.level == weak]
    if chosen:
        return chosen[0]
    reason = found.status.removeprefix("untestable: ") if found.status != "ok" else f"no {weak} - {strong} pair"
    return stats.untestable("init", weak, strong, found.scope, found.n_units, math.nan, reason, found.method, alpha)


def first_epoch_comparison(metrics_list: list[dict[str, Any]], weak: str, strong: str, confidence: float) -> FirstEpoch:
    """Did the weak-signal init reach a lower validation accuracy after epoch 1 than the strong one?

    The grid runs one learning rate per optimizer; sweep runs (several per optimizer) would pair runs of
    different learning rates, so they are refused. A run that diverged before epoch 1 ended has no epoch-1
    accuracy: its (seed, optimizer) block is dropped and the comparison's reason says so.
    """
    table = epoch1_table(metrics_list)
    several = table.groupby("optimizer")["lr"].nunique(dropna=True)
    if (several > 1).any():
        raise ValueError(
            "first_epoch_comparison needs one learning rate per optimizer (the grid runs, not the sweep); "
            f"got several for {', '.join(several[several > 1].index)}"
        )
    alpha = stats.alpha_of(confidence)
    pair = table[table["init"].isin([weak, strong])]
    response, common = "epoch1_val_accuracy", {"reference": strong}
    pooled = levels.compare_levels(pair, response, "init", confidence, over=("optimizer",), **common)
    per = levels.compare_within(pair, response, "init", ("optimizer",), confidence, **common)
    comparisons = {found.scope["optimizer"]: _weak_minus_strong(found, weak, strong, alpha) for found in per}
    testable = sum(c.p is not None for c in comparisons.values())
    rows = []
    for optimizer in dict.fromkeys(table["optimizer"]):
        runs = table[table["optimizer"] == optimizer]
        weak_runs, strong_runs = runs[runs["init"] == weak], runs[runs["init"] == strong]
        comparison = comparisons.get(optimizer) or stats.untestable(
            "init", weak, strong, {"optimizer": optimizer}, 0, math.nan, f"no {weak} or {strong} run", "", alpha
        )
        rows.append(
            {
                "optimizer": optimizer,
                "weak_mean": weak_runs[response].mean(),
                "weak_runs": len(weak_runs),
                "weak_without_epoch1": int(weak_runs[response].isna().sum()),
                "strong_mean": strong_runs[response].mean(),
                "strong_runs": len(strong_runs),
                "strong_without_epoch1": int(strong_runs[response].isna().sum()),
                "comparison": comparison,
                "mde": detectable(comparison, testable),  # at Holm's first step over the testable optimizers
                "verdict": epoch1_verdict(comparison),
            }
        )
    pooled_comparison = _weak_minus_strong(pooled, weak, strong, alpha)
    return FirstEpoch(weak, strong, pooled_comparison, detectable(pooled_comparison), pd.DataFrame(rows))
