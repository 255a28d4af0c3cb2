"""The findings' learning-rate section as Markdown, every statement computed by `sweep_analysis`.

What was swept and what diverged, each pair's best lr (chosen on validation, its test accuracy only
reported) and whether its optimum is bracketed, with the range to sweep next when not, whether the
ranking changed, the best set at the best lrs, and the best lr against the default lr.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fmnist_initopt import stats
from fmnist_initopt.findings_comparisons import comparison_text
from fmnist_initopt.sweep_analysis import (
    ALL_DIVERGED,
    INSIDE,
    ONLY_ONE,
    best_learning_rates,
    best_set_at_best_lr,
    best_vs_default,
    next_ranges,
    rank_moved,
    ranking_changed,
    rankings,
    sweep_table,
)
from fmnist_initopt.wording import percent


def _lrs_text(lrs) -> str:
    return "[" + ", ".join(f"{lr:g}" for lr in lrs) + "]"


def suggestion_text(optimizer: str, lrs: list[float]) -> str:
    return f"try `lr_sweep.learning_rates.{optimizer}: {_lrs_text(lrs)}`"


def edge_text(row) -> str:
    """The table cell that says whether the pair's optimum was bracketed."""
    if row["edge"] == INSIDE:
        return "yes"
    if row["edge"] == ALL_DIVERGED:
        return "no: every swept lr lost a seed to divergence"
    if row["edge"] == ONLY_ONE:
        return f"no: only one lr swept ({row['best_lr']:g})"
    return f"no: best at the edge ({row['best_lr']:g}, the {row['edge']} swept)"


def _with_spread(mean: float, std: float) -> str:
    return percent(mean, 2) if pd.isna(std) else f"{percent(mean, 2)} ± {100 * std:.2f}"


def _rank(value) -> str:
    return "–" if pd.isna(value) else str(int(value))


def _best_set_lines(table: pd.DataFrame, ranked: pd.DataFrame, confidence: float) -> list[str]:
    """Which combinations, each at its best lr, cannot be told apart from the best on validation accuracy."""
    found = best_set_at_best_lr(table, ranked, confidence)
    if found is None:
        return []
    members = found.members[found.members["in_set"]]
    names = [f"{m.init} + {m.optimizer}" for m in members.itertuples()]
    line = (
        f"Each at its best lr, the combinations not distinguishable from the best on validation accuracy "
        f"(max-statistic test within seeds over all of them): {', '.join(names)} ({len(names)} of "
        f"{len(found.members)})."
    )
    if found.status != "ok":
        line += f" {found.status[0].upper()}{found.status[1:]}."
    line += " Ranks inside this set are not evidence of a difference."
    return [line]


def _overview_lines(table: pd.DataFrame, validation_source: str) -> list[str]:
    """What was swept, with how many seeds, what diverged, how the best lr is chosen, and the caveat when the
    validation set is the test set."""
    seeds = table.groupby(["init", "optimizer", "lr"])["seed"].nunique()
    lrs_per_optimizer = table.groupby("optimizer", sort=False)["lr"].unique()
    diverged = table[table["status"] == "diverged"]
    lines = [
        "Swept "
        + "; ".join(f"{opt}: {_lrs_text(sorted(lrs))}" for opt, lrs in lrs_per_optimizer.items())
        + f". {seeds.min()}"
        + (f"–{seeds.max()}" if seeds.max() != seeds.min() else "")
        + f" seed(s) per point; {len(table)} runs, {len(diverged)} diverged"
        + (
            " ("
            + ", ".join(
                f"{init} + {opt} at lr {lr:g}: {count}"
                for (init, opt, lr), count in diverged.groupby(["init", "optimizer", "lr"]).size().items()
            )
            + ")"
            if len(diverged)
            else ""
        )
        + ". The best learning rate of each pair is the one with the highest mean final validation accuracy "
        "among those where no seed diverged; its test accuracy is reported, never used to choose.",
        "",
    ]
    if validation_source == "test":
        lines += [
            "**Caveat:** `validation.source` is `test`, so the validation set *is* the test set and the best "
            "learning rates were chosen on the test set; the test accuracies at the best lr are optimistic.",
            "",
        ]
    return lines


def _ranking_table(ranked: pd.DataFrame) -> str:
    """Per pair: test accuracy and rank at the default lr and at the best lr, and whether the optimum is bracketed."""
    shown = pd.DataFrame(
        {
            "combination": ranked["combination"],
            "default lr": ranked["default_lr"].map(lambda v: "n/a" if pd.isna(v) else f"{v:g}"),
            "test acc. at default lr": [
                _with_spread(m, s) for m, s in zip(ranked["default_test_mean"], ranked["default_test_std"])
            ],
            "rank at default": ranked["default_rank"].map(_rank),
            "best lr (by validation)": ranked["best_lr"].map(lambda v: "all diverged" if pd.isna(v) else f"{v:g}"),
            "optimum bracketed?": [edge_text(row) for row in ranked.to_dict("records")],
            "val. acc. at best lr": ranked["best_val_mean"].map(lambda value: percent(value, 2)),
            "test acc. at best lr": [
                _with_spread(m, s) for m, s in zip(ranked["best_test_mean"], ranked["best_test_std"])
            ],
            "rank at best lr": ranked["best_rank"].map(_rank),
        }
    )
    return shown.to_markdown(index=False)


def _bracketing_line(ranked: pd.DataFrame, best: pd.DataFrame) -> str:
    """Whether every pair's optimum is bracketed and, per optimizer where one is not, the lrs to sweep next."""
    unbracketed = ranked[ranked["edge"] != INSIDE]
    if unbracketed.empty:
        return "Every pair's best learning rate lies inside its swept range: each optimum is bracketed."
    suggestions = next_ranges(best)
    return (
        f"**Not bracketed:** the best learning rate of {len(unbracketed)} of {len(ranked)} pairs is not inside "
        "its swept range, so its optimum may lie beyond it and the ranks may change with a wider sweep: "
        + "; ".join(
            f"{opt} ({', '.join(unbracketed.loc[unbracketed['optimizer'] == opt, 'combination'])}): "
            + suggestion_text(opt, lrs)
            for opt, lrs in suggestions.items()
        )
        + "."
    )


def _ranking_verdict_lines(ranked: pd.DataFrame) -> list[str]:
    """Whether the ranking changed at the best lrs (which combinations moved), and how many pairs retuned."""
    moved = ranked[rank_moved(ranked)]
    if ranking_changed(ranked):
        verdict = (
            f"**The ranking changed** when each pair gets its best learning rate: {len(moved)} of {len(ranked)} "
            "combinations moved ("
            + ", ".join(
                f"{c} {_rank(d)}→{_rank(b)}"
                for c, d, b in zip(moved["combination"], moved["default_rank"], moved["best_rank"])
            )
            + ")."
        )
    else:
        verdict = "**The ranking did not change** when each pair gets its best learning rate."
    retuned = ranked[ranked["best_lr"].notna() & ~np.isclose(ranked["best_lr"], ranked["default_lr"], equal_nan=True)]
    return [
        verdict,
        f"{len(retuned)} of {len(ranked)} pairs do better on validation at a learning rate other than their default.",
        "",
    ]


def _best_vs_default_lines(table: pd.DataFrame, ranked: pd.DataFrame, confidence: float) -> list[str]:
    """Per pair, the best lr against the default lr on test accuracy, then how many retuned pairs changed."""
    comparisons = best_vs_default(table, ranked, confidence)
    lines = [
        "Best lr against the default lr, test accuracy, paired on seed (exact sign-flip permutation test, "
        f"Holm across the pairs, alpha = {stats.alpha_of(confidence):g}):",
        "",
    ]
    for combination, comparison in zip(ranked["combination"], comparisons):
        text = comparison if isinstance(comparison, str) else comparison_text(comparison)
        lines.append(f"- {combination}: {text}")
    tested = [c for c in comparisons if isinstance(c, stats.Comparison)]
    better = [c for c in tested if c.verdict == "different" and c.estimate > 0]
    worse = [c for c in tested if c.verdict == "different" and c.estimate < 0]
    if tested and all(c.verdict == "untestable" for c in tested):
        lines += ["", "Whether retuning changed the test accuracy is untestable for every retuned pair (see above)."]
    elif tested:
        lines += [
            "",
            f"Retuning the learning rate changed the test accuracy significantly for {len(better) + len(worse)} of "
            f"{len(tested)} retuned pairs ({len(better)} better, {len(worse)} worse).",
        ]
    return lines


def sweep_section(
    metrics_list: list[dict[str, Any]],
    default_lrs: dict[str, float],
    validation_source: str,
    confidence: float = 0.95,
) -> str:
    """The findings' learning-rate section as Markdown, every statement computed from the runs."""
    lines = ["## Learning-rate sensitivity", ""]
    table = sweep_table(metrics_list)
    if table.empty:
        return "\n".join(lines + ["No sweep runs: nothing to report on learning rates."]) + "\n"
    ranked = rankings(table, default_lrs)
    lines += _overview_lines(table, validation_source)
    lines += [_ranking_table(ranked), ""]
    lines += [_bracketing_line(ranked, best_learning_rates(table)), ""]
    lines += _ranking_verdict_lines(ranked)
    lines += _best_set_lines(table, ranked, confidence) + [""]
    lines += _best_vs_default_lines(table, ranked, confidence)
    return "\n".join(lines) + "\n"
