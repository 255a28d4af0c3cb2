"""findings.md's best set: which combinations are eligible, the set the max-statistic test cannot shrink,
the smallest gap the study could exclude, and the ranking table.

A combination that lost seeds to divergence would be ranked on its survivors only, so it is listed but cannot
be best; when every combination lost seeds, all are ranked on their completed seeds and the report says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from fmnist_initopt import best as best_module
from fmnist_initopt.aggregate import combination_counts, combination_label
from fmnist_initopt.findings_comparisons import comparison_text, level_text
from fmnist_initopt.findings_speed import seeds_text
from fmnist_initopt.wording import accuracy_with_interval, count, markdown_table, number, percent_points

ACCURACY = "test_accuracy"  # what the answer reports
SELECTION = "final_val_accuracy"  # what "best" is chosen on, so the test set only scores the choice


@dataclass(frozen=True)
class Selection:
    """The best set on final validation accuracy among the eligible combinations, and what was left out."""

    result: best_module.BestSet
    counts: pd.DataFrame  # per combination: n_seeds, n_completed, n_diverged
    eligible_note: str  # "" or the sentence naming the combinations that could not be best


def select_best(frame: pd.DataFrame, confidence: float) -> Selection:
    counts = combination_counts(frame)
    complete = counts[(counts["n_completed"] == counts["n_seeds"]) & (counts["n_completed"] > 0)]
    if complete.empty:
        pool = frame
        note = (
            " No combination completed every seed, so all are ranked on their completed seeds only."
            if (counts["n_completed"] > 0).any()
            else ""
        )
    else:
        keys = pd.MultiIndex.from_frame(frame[["init", "optimizer"]])
        pool = frame[keys.isin(pd.MultiIndex.from_frame(complete[["init", "optimizer"]]))]
        lost = counts[counts["n_completed"] < counts["n_seeds"]]
        note = (
            " Not eligible, because seeds diverged: "
            + ", ".join(
                f"{combination_label(r.init, r.optimizer)} ({r.n_seeds - r.n_completed} of {r.n_seeds} seeds lost)"
                for r in lost.itertuples(index=False)
            )
            + "."
            if len(lost)
            else ""
        )
    result = best_module.best_set(pool, SELECTION, ACCURACY, ["init", "optimizer"], confidence)
    return Selection(result, counts, note)


def members_in_set(best: best_module.BestSet) -> pd.DataFrame:
    return best.members[best.members["in_set"]].sort_values("select_mean", ascending=False, kind="stable")


def eligible_size(best: best_module.BestSet) -> int:
    return int((best.members["n_runs"] > best.members["n_dropped"]).sum())


def excludable_text(best: best_module.BestSet) -> str:
    """The smallest gap to the best the study could exclude, in words."""
    gap = best.smallest_excludable_gap
    if gap is None:
        return "no gap could be tested"
    if not math.isfinite(gap):
        return f"with {count(best.n_units, 'seed')} no gap, however large, could be excluded"
    return f"a combination more than {percent_points(gap)} below the best in validation accuracy would be excluded"


def best_set_line(selection: Selection) -> str:
    """The opening's line: how many combinations are in the set, and the smallest gap it could exclude."""
    best = selection.result
    head = "**Best set:**"
    if best.best is None:
        return f"{head} none: {best.status}."
    size, members = eligible_size(best), members_in_set(best)
    leader = f"**{level_text(tuple(best.best))}**"
    if size == 1:
        return f"{head} {leader}, the only eligible combination."
    gap = best.smallest_excludable_gap
    limit = (
        f"a gap over {percent_points(gap)} would be excluded"
        if gap is not None and math.isfinite(gap)
        else f"no gap could be excluded with {count(best.n_units, 'seed')}"
    )
    return f"{head} {len(members)} of {size} combinations, led by {leader}; {limit}."


def best_set_evidence(selection: Selection) -> str:
    best = selection.result
    head = "**Best combinations**"
    if best.best is None:
        return f"{head}: none: {best.status}.{selection.eligible_note}"
    members = members_in_set(best)
    listed = ", ".join(
        f"**{combination_label(m.init, m.optimizer)}** (test {number(m.report_mean)})"
        for m in members.itertuples(index=False)
    )
    size = eligible_size(best)
    if size == 1:
        return f"{head}: only one eligible combination, {listed}.{selection.eligible_note}"
    status = "" if best.status == "ok" else f" ({best.status})"
    how = (
        f"Every combination was compared with the best at once ({best.method}), so choosing the best from the same "
        f"runs is accounted for: {excludable_text(best)}."
        if best.smallest_excludable_gap is not None
        else "No combination could be compared with the best, so none is excluded."
    )
    return (
        f"{head} (selected on final validation accuracy, reported on test accuracy): {listed}: "
        f"{len(members)} of {size} eligible combination{'s' * (size != 1)} cannot be told apart from the best"
        f"{status}. {how}{selection.eligible_note}"
    )


def ranking_table(frame: pd.DataFrame, selection: Selection, confidence: float) -> str:
    best = selection.result
    comparisons = {c.level: c for c in best.comparisons}
    best_key = tuple(best.best) if best.best else None
    in_set = {(m.init, m.optimizer): bool(m.in_set) for m in best.members.itertuples(index=False)}
    means = frame.groupby(["init", "optimizer"], sort=False)[SELECTION].mean()
    counts = selection.counts
    keys = list(zip(counts["init"], counts["optimizer"]))
    order = counts.assign(
        eligible=[key in in_set and completed > 0 for key, completed in zip(keys, counts["n_completed"])],
        is_best=[key == best_key for key in keys],
        select=[means.get(key, math.nan) for key in keys],
    ).sort_values(["eligible", "is_best", "select"], ascending=[False, False, False], kind="stable", na_position="last")
    rows = []
    for rank, row in enumerate(order.itertuples(index=False), start=1):
        key = (row.init, row.optimizer)
        runs = frame[(frame["init"] == row.init) & (frame["optimizer"] == row.optimizer)]
        versus, member = _versus(row, key, best_key, comparisons, in_set, best.status)
        rows.append(
            {
                "rank": str(rank) if row.eligible else "–",
                "init + optimizer": level_text(key),
                "final validation accuracy (selects)": accuracy_with_interval(runs[SELECTION], confidence),
                "final test accuracy (reports)": accuracy_with_interval(runs[ACCURACY], confidence),
                "seeds completed / diverged": seeds_text(row),
                "validation vs the best (all at once)": versus,
                "in the best set": member,
            }
        )
    return markdown_table(rows)


def _versus(row, key, best_key, comparisons: dict, in_set: dict, status: str) -> tuple[str, str]:
    """The ranking's last two cells; `status` (the best set's notes, said once in the Answer) is left out."""
    if row.n_completed == 0:
        return "no completed run", "no"
    if not row.eligible:
        return f"not eligible: {row.n_seeds - row.n_completed} of {row.n_seeds} seeds diverged", "no"
    if key == best_key:
        return "best (highest mean)", "yes"
    comparison = comparisons.get(key)
    text = comparison_text(comparison, stated=status) if comparison else "n/a"
    return text, ("yes" if in_set.get(key) else "no")
