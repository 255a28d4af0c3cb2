"""Learning-rate sweep analysis: pure functions of metrics.json dictionaries.

The best learning rate of an (init, optimizer) pair is chosen on the mean over seeds of the final
validation accuracy, and only among learning rates at which no seed diverged. The test accuracy is
never looked at for the choice; it is reported afterwards.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

POINT_COLUMNS = ["init", "optimizer", "lr", "seed", "status", "val_accuracy", "test_accuracy"]


def sweep_table(metrics_list: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per run: its (init, optimizer, lr, seed), final validation and test accuracy."""
    rows = []
    for metrics in metrics_list:
        completed = metrics["status"] == "completed"
        rows.append(
            {
                "init": metrics["run"]["init"],
                "optimizer": metrics["run"]["optimizer"],
                "lr": float(metrics["spec"]["optimizer_kwargs"]["lr"]),
                "seed": metrics["run"]["seed"],
                "status": metrics["status"],
                "val_accuracy": metrics["history"]["val_accuracy"][-1] if completed else float("nan"),
                "test_accuracy": metrics["test"]["accuracy"] if completed else float("nan"),
            }
        )
    return pd.DataFrame(rows, columns=POINT_COLUMNS)


def lr_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per (init, optimizer, lr): mean/min/max over seeds of val and test accuracy, seeds, divergences."""
    grouped = table.groupby(["init", "optimizer", "lr"])
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


def best_learning_rates(table: pd.DataFrame) -> pd.DataFrame:
    """Per (init, optimizer): the lr with the highest mean validation accuracy among those where
    every seed completed; NaN lr where every lr diverged for some seed."""
    summary = lr_summary(table)
    rows = []
    for (init, optimizer), group in summary.groupby(["init", "optimizer"], sort=False):
        eligible = group[group["diverged"] == 0]
        if eligible.empty:
            rows.append({"init": init, "optimizer": optimizer, "best_lr": float("nan")})
            continue
        best = eligible.loc[eligible["val_mean"].idxmax()]
        rows.append(
            {
                "init": init,
                "optimizer": optimizer,
                "best_lr": best["lr"],
                "val_mean": best["val_mean"],
                "val_std": best["val_std"],
                "test_mean": best["test_mean"],
                "test_std": best["test_std"],
                "seeds": best["seeds"],
            }
        )
    return pd.DataFrame(rows)


def rankings(table: pd.DataFrame, default_lrs: dict[str, float]) -> pd.DataFrame:
    """Each (init, optimizer) at its default lr and at its best lr, ranked by mean test accuracy
    (1 = best) both times. Both sides use the sweep's seeds."""
    summary = lr_summary(table).set_index(["init", "optimizer", "lr"])
    best = best_learning_rates(table).set_index(["init", "optimizer"])
    rows = []
    for (init, optimizer), chosen in best.iterrows():
        default = summary.loc[(init, optimizer, default_lrs[optimizer])]
        rows.append(
            {
                "combination": f"{init} + {optimizer}",
                "default_lr": default_lrs[optimizer],
                "default_test_mean": default["test_mean"],
                "default_test_std": default["test_std"],
                "best_lr": chosen["best_lr"],
                "best_val_mean": chosen.get("val_mean", float("nan")),
                "best_test_mean": chosen.get("test_mean", float("nan")),
                "best_test_std": chosen.get("test_std", float("nan")),
            }
        )
    ranked = pd.DataFrame(rows)
    ranked["default_rank"] = ranked["default_test_mean"].rank(ascending=False, method="min").astype("Int64")
    ranked["best_rank"] = ranked["best_test_mean"].rank(ascending=False, method="min").astype("Int64")
    return ranked.sort_values("best_rank").reset_index(drop=True)


def ranking_changed(ranked: pd.DataFrame) -> bool:
    return bool((ranked["default_rank"] != ranked["best_rank"]).any())


def _percent(value: float) -> str:
    return "n/a" if pd.isna(value) else f"{100 * value:.2f}%"


def _with_spread(mean: float, std: float) -> str:
    return _percent(mean) if pd.isna(std) else f"{_percent(mean)} ± {100 * std:.2f}"


def sweep_section(metrics_list: list[dict[str, Any]], default_lrs: dict[str, float], validation_source: str) -> str:
    """The findings' learning-rate section as Markdown, every statement computed from the runs."""
    table = sweep_table(metrics_list)
    ranked = rankings(table, default_lrs)
    seeds = int(table.groupby(["init", "optimizer", "lr"])["seed"].count().min())
    lrs_per_optimizer = table.groupby("optimizer")["lr"].nunique()
    lines = [
        "## Learning-rate sensitivity",
        "",
        f"Swept {', '.join(f'{opt}: {n} learning rates' for opt, n in lrs_per_optimizer.items())}; "
        f"{seeds} seed(s) per point; {len(table)} runs, {int((table['status'] == 'diverged').sum())} diverged. "
        "The best learning rate of each pair is the one with the highest mean final validation accuracy "
        "among those where no seed diverged; its test accuracy is reported, never used to choose.",
        "",
    ]
    if validation_source == "test":
        lines += [
            "**Caveat:** `validation.source` is `test`, so the validation set *is* the test set and the best "
            "learning rates were chosen on the test set; the test accuracies at the best lr are optimistic.",
            "",
        ]
    shown = pd.DataFrame(
        {
            "combination": ranked["combination"],
            "default lr": ranked["default_lr"].map(lambda v: f"{v:g}"),
            "test acc. at default lr": [
                _with_spread(m, s) for m, s in zip(ranked["default_test_mean"], ranked["default_test_std"])
            ],
            "rank at default": ranked["default_rank"],
            "best lr (by validation)": ranked["best_lr"].map(lambda v: "all diverged" if pd.isna(v) else f"{v:g}"),
            "val. acc. at best lr": ranked["best_val_mean"].map(_percent),
            "test acc. at best lr": [
                _with_spread(m, s) for m, s in zip(ranked["best_test_mean"], ranked["best_test_std"])
            ],
            "rank at best lr": ranked["best_rank"],
        }
    )
    lines += [shown.to_markdown(index=False), ""]
    moved = ranked[ranked["default_rank"] != ranked["best_rank"]]
    if ranking_changed(ranked):
        verdict = (
            f"**The ranking changed** when each pair gets its best learning rate: {len(moved)} of {len(ranked)} "
            f"combinations moved ({', '.join(f'{c} {d}→{b}' for c, d, b in zip(moved['combination'], moved['default_rank'], moved['best_rank']))})."
        )
    else:
        verdict = "**The ranking did not change** when each pair gets its best learning rate."
    lines.append(verdict)
    retuned = ranked[ranked["best_lr"] != ranked["default_lr"]]
    lines.append(
        f"{len(retuned)} of {len(ranked)} pairs do better on validation at a learning rate other than their default."
    )
    if seeds < 2:
        lines.append(
            "With one seed per point the seed noise is unknown: treat close accuracies and the ranks they decide as ties."
        )
    else:
        gaps = ranked["best_test_mean"].diff().abs().iloc[1:].to_numpy()
        noise = (
            pd.concat(
                [
                    ranked["best_test_std"].iloc[:-1].reset_index(drop=True),
                    ranked["best_test_std"].iloc[1:].reset_index(drop=True),
                ],
                axis=1,
            )
            .max(axis=1)
            .to_numpy()
        )
        within = int((gaps < noise).sum())
        lines.append(
            f"{within} of {len(gaps)} neighbouring places in the best-lr ranking are separated by less than the "
            "larger seed standard deviation of the two: those places are within seed noise."
        )
    return "\n".join(lines) + "\n"
