"""Learning-rate sweep analysis: the tables, best lrs and tests, pure functions of metrics.json dictionaries;
`sweep_findings` writes them as the findings' section.

The best learning rate of an (init, optimizer) pair is chosen on the mean over seeds of the final
validation accuracy, and only among learning rates at which no seed diverged. The test accuracy is
never looked at for the choice; it is reported afterwards. A best learning rate at the edge of the
swept range is flagged, with the range to sweep next: the optimum may lie beyond it.

Every comparison uses the one decision rule of `stats`: the best lr against the default lr is paired
on seed (the sweep trains every lr at the same seeds), Holm across the pairs; the combinations at
their best lr are compared with the best set (`best.best_set`: the max-statistic test within seeds).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from fmnist_initopt import stats
from fmnist_initopt.best import BestSet, best_set
from fmnist_initopt.signal_analysis import number_or_nan

POINT_COLUMNS = ["init", "optimizer", "lr", "seed", "status", "val_accuracy", "test_accuracy"]
SUMMARY_COLUMNS = [
    "init",
    "optimizer",
    "lr",
    "val_mean",
    "val_std",
    "val_min",
    "val_max",
    "test_mean",
    "test_std",
    "seeds",
    "diverged",
]
BEST_COLUMNS = [
    "init",
    "optimizer",
    "best_lr",
    "val_mean",
    "val_std",
    "test_mean",
    "test_std",
    "seeds",
    "swept",
    "edge",
]
# What `edge` says about a pair's best lr
INSIDE, LARGEST, SMALLEST, ONLY_ONE, ALL_DIVERGED = "inside", "largest", "smallest", "only one lr", "all diverged"


def sweep_table(metrics_list: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per run: its (init, optimizer, lr, seed), final validation and test accuracy (NaN unless completed)."""
    rows = []
    for metrics in metrics_list:
        completed = metrics.get("status") == "completed"
        accuracies = (metrics.get("history") or {}).get("val_accuracy") or []
        rows.append(
            {
                "init": metrics["run"]["init"],
                "optimizer": metrics["run"]["optimizer"],
                "lr": float(metrics["spec"]["optimizer_kwargs"]["lr"]),
                "seed": metrics["run"]["seed"],
                "status": metrics.get("status", "completed"),
                "val_accuracy": number_or_nan(accuracies[-1]) if completed and accuracies else math.nan,
                "test_accuracy": number_or_nan((metrics.get("test") or {}).get("accuracy")) if completed else math.nan,
            }
        )
    return pd.DataFrame(rows, columns=POINT_COLUMNS).astype(
        {"lr": float, "val_accuracy": float, "test_accuracy": float}
    )


def lr_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per (init, optimizer, lr): mean/min/max over seeds of val and test accuracy, seeds, divergences."""
    if table.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    grouped = table.groupby(["init", "optimizer", "lr"], sort=True)
    summary = grouped.agg(
        val_mean=("val_accuracy", "mean"),
        val_std=("val_accuracy", "std"),
        val_min=("val_accuracy", "min"),
        val_max=("val_accuracy", "max"),
        test_mean=("test_accuracy", "mean"),
        test_std=("test_accuracy", "std"),
        seeds=("seed", "count"),
        diverged=("status", lambda s: int((s == "diverged").sum())),
    )
    return summary.reset_index()


def _eligible(group: pd.DataFrame) -> pd.DataFrame:
    """Learning rates where no seed diverged and at least one seed has a validation accuracy."""
    return group[(group["diverged"] == 0) & group["val_mean"].notna()]


def best_learning_rates(table: pd.DataFrame) -> pd.DataFrame:
    """Per (init, optimizer): the lr with the highest mean validation accuracy among those where every seed
    completed (NaN lr where none did), the lrs swept, and where the best lies in them (`edge`)."""
    summary = lr_summary(table)
    rows = []
    for (init, optimizer), group in summary.groupby(["init", "optimizer"], sort=False):
        swept = tuple(sorted(group["lr"]))
        eligible = _eligible(group)
        row = {"init": init, "optimizer": optimizer, "swept": swept}
        if eligible.empty:
            rows.append({**row, "best_lr": math.nan, "edge": ALL_DIVERGED})
            continue
        best = eligible.loc[eligible["val_mean"].idxmax()]
        if len(swept) == 1:
            edge = ONLY_ONE
        elif math.isclose(best["lr"], swept[-1]):
            edge = LARGEST
        elif math.isclose(best["lr"], swept[0]):
            edge = SMALLEST
        else:
            edge = INSIDE
        rows.append(
            {
                **row,
                "best_lr": best["lr"],
                "val_mean": best["val_mean"],
                "val_std": best["val_std"],
                "test_mean": best["test_mean"],
                "test_std": best["test_std"],
                "seeds": best["seeds"],
                "edge": edge,
            }
        )
    return pd.DataFrame(rows, columns=BEST_COLUMNS)


def _series(step: float) -> tuple[float, ...]:
    """Mantissas of the round-number series closest to the sweep's spacing: 1-10-100, 1-3-10, 1-2-5-10."""
    if step >= 6:
        return (1.0,)
    if step >= 2.5:
        return (1.0, 3.0)
    return (1.0, 2.0, 5.0)


def extend_range(swept: tuple[float, ...], side: str, count: int = 2) -> list[float]:
    """`count` round learning rates beyond the `side` ("largest" or "smallest") end of `swept`, spaced like it."""
    lrs = sorted(swept)
    edge = lrs[-1] if side == LARGEST else lrs[0]
    neighbour = (lrs[-2] if side == LARGEST else lrs[1]) if len(lrs) > 1 else None
    step = max(edge, neighbour) / min(edge, neighbour) if neighbour else math.sqrt(10)
    exponent = math.floor(math.log10(edge))
    candidates = sorted(
        float(f"{mantissa * 10.0**power:.3g}")
        for power in range(exponent - 4, exponent + 5)
        for mantissa in _series(step)
    )
    # the next value must be a real step away, not a round number a hair past the edge
    gap = math.sqrt(min(step, 10.0))
    if side == LARGEST:
        return [v for v in candidates if v > edge * gap * 0.999][:count]
    return [v for v in candidates if v < edge / gap * 1.001][-count:]


def next_ranges(best: pd.DataFrame) -> dict[str, list[float]]:
    """Per optimizer whose sweep did not bracket some pair's optimum: the learning rates to sweep next.

    They keep the swept lr next to the edge and the edge itself (so a best lr found there is bracketed the
    next time) and add two beyond it; a sweep where every lr lost a seed to divergence goes below it.
    """
    out = {}
    for optimizer, group in best.groupby("optimizer", sort=False):
        swept = tuple(sorted({lr for lrs in group["swept"] for lr in lrs}))
        edges = set(group["edge"])
        up = bool(edges & {LARGEST, ONLY_ONE})
        down = bool(edges & {SMALLEST, ONLY_ONE, ALL_DIVERGED})
        if not (up or down):
            continue
        kept = list(swept)
        if up and not down:
            kept = kept[-2:]
        elif down and not up:
            kept = kept[:2]
        lower = extend_range(swept, SMALLEST) if down else []
        upper = extend_range(swept, LARGEST) if up else []
        out[optimizer] = sorted(set(lower + kept + upper))
    return out


def rankings(table: pd.DataFrame, default_lrs: dict[str, float]) -> pd.DataFrame:
    """Each (init, optimizer) at its default lr and at its best lr, ranked by mean test accuracy
    (1 = best) both times. Both sides use the sweep's seeds; a default lr that was not swept has no rank."""
    summary = lr_summary(table).set_index(["init", "optimizer", "lr"])
    best = best_learning_rates(table)
    rows = []
    for chosen in best.to_dict("records"):
        init, optimizer = chosen["init"], chosen["optimizer"]
        default_lr = number_or_nan(default_lrs.get(optimizer))
        key = (init, optimizer, default_lr)
        default = summary.loc[key] if key in summary.index else {}
        rows.append(
            {
                "init": init,
                "optimizer": optimizer,
                "combination": f"{init} + {optimizer}",
                "default_lr": default_lr,
                "default_test_mean": number_or_nan(default.get("test_mean")) if len(default) else math.nan,
                "default_test_std": number_or_nan(default.get("test_std")) if len(default) else math.nan,
                "best_lr": chosen["best_lr"],
                "best_val_mean": chosen["val_mean"],
                "best_test_mean": chosen["test_mean"],
                "best_test_std": chosen["test_std"],
                "edge": chosen["edge"],
            }
        )
    ranked = pd.DataFrame(
        rows,
        columns=[
            "init",
            "optimizer",
            "combination",
            "default_lr",
            "default_test_mean",
            "default_test_std",
            "best_lr",
            "best_val_mean",
            "best_test_mean",
            "best_test_std",
            "edge",
        ],
    )
    for side in ("default", "best"):
        ranked[f"{side}_rank"] = (
            ranked[f"{side}_test_mean"].astype(float).rank(ascending=False, method="min").astype("Int64")
        )
    return ranked.sort_values(["best_rank", "combination"], na_position="last").reset_index(drop=True)


def ranking_changed(ranked: pd.DataFrame) -> bool:
    return bool(rank_moved(ranked).any())


def rank_moved(ranked: pd.DataFrame) -> pd.Series:
    """Per ranked row: whether its rank at the best lr differs from its rank at the default lr."""
    # a rank that exists on one side only (all diverged, default not swept) is no evidence of a move
    return (ranked["default_rank"] != ranked["best_rank"]).fillna(False).astype(bool)


def best_vs_default(table: pd.DataFrame, ranked: pd.DataFrame, confidence: float) -> list[stats.Comparison | str]:
    """Per ranked row: test accuracy at the best lr minus at the default lr, paired on seed, Holm across the
    pairs whose best lr is another one; a string says why there is nothing to compare."""
    out: list[stats.Comparison | str] = []
    tested = []
    for row in ranked.to_dict("records"):
        if pd.isna(row["best_lr"]):
            out.append("no best lr: every swept lr lost a seed to divergence")
            continue
        if (
            pd.isna(row["default_lr"])
            or not ((table["optimizer"] == row["optimizer"]) & np.isclose(table["lr"], row["default_lr"])).any()
        ):
            out.append("the default lr was not swept")
            continue
        if math.isclose(row["best_lr"], row["default_lr"]):
            out.append("the default lr is the best")
            continue
        runs = table[(table["init"] == row["init"]) & (table["optimizer"] == row["optimizer"])]

        def by_seed(lr, runs=runs):
            return runs[np.isclose(runs["lr"], lr)].groupby("seed")["test_accuracy"].mean()

        at_best, at_default = by_seed(row["best_lr"]), by_seed(row["default_lr"])
        seeds = at_best.index.union(at_default.index)
        out.append(
            stats.paired_difference(
                at_best.reindex(seeds), at_default.reindex(seeds), confidence,
                factor="lr", level=row["best_lr"], reference=row["default_lr"],
                scope={"init": row["init"], "optimizer": row["optimizer"]},
            )
        )  # fmt: skip
        tested.append(len(out) - 1)
    adjusted = stats.holm([out[i] for i in tested], confidence)
    for i, comparison in zip(tested, adjusted):
        out[i] = comparison
    return out


def best_set_at_best_lr(table: pd.DataFrame, ranked: pd.DataFrame, confidence: float) -> BestSet | None:
    """The combinations, each at its best lr, not distinguishable from the best on validation accuracy
    (the max-statistic test within seeds over all of them); None when no pair has a best lr."""
    chosen = ranked.dropna(subset=["best_lr"])
    if chosen.empty:
        return None
    keys = pd.MultiIndex.from_arrays([chosen["init"], chosen["optimizer"], chosen["best_lr"]])
    at_best = table[pd.MultiIndex.from_frame(table[["init", "optimizer", "lr"]]).isin(keys)]
    return best_set(at_best, "val_accuracy", "test_accuracy", ["init", "optimizer"], confidence, paired_on=("seed",))
