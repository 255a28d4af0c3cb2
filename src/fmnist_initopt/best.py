"""The best set: the best combination and every one the study cannot exclude, with the smallest gap it
could have excluded.

Selected on one metric (validation accuracy), reported on another (test accuracy), so the test set only scores
the choice. Every combination is compared with the best at once by the max-statistic permutation test within
seeds (levels.compare_levels, maxstat.py), using every run: with the default study (6 combinations x 8 seeds)
a clearly worse combination is excluded, and `smallest_excludable_gap` says how clear "clearly" is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fmnist_initopt.levels import compare_levels
from fmnist_initopt.signflip import N_RESAMPLES
from fmnist_initopt.stats import alpha_of


@dataclass(frozen=True)
class BestSet:
    """The best combination and the set not distinguishable from it, with counts of dropped runs."""

    best: tuple | None
    members: pd.DataFrame  # per combination: group cols, select_mean, report_mean, n_runs, n_dropped, in_set
    comparisons: tuple  # stats.Comparison per other combination: it - best, on the select metric
    status: str  # "ok", or what was dropped / why nothing could be excluded
    n_dropped: int  # runs without a finite select metric (diverged)
    smallest_excludable_gap: float | None  # select-metric units: any larger gap to the best was excluded
    n_units: int  # seeds the test used
    method: str
    alpha: float


def _members(frame: pd.DataFrame, group_cols: list, sel: np.ndarray, rep: np.ndarray) -> pd.DataFrame:
    data = frame[group_cols].assign(_sel=sel, _rep=rep, _ok=np.isfinite(sel))
    rows = []
    for _, sub in data.groupby(group_cols, dropna=False, sort=False):
        good = sub[sub["_ok"]]
        rows.append(
            {
                **{c: sub[c].iloc[0] for c in group_cols},
                "select_mean": good["_sel"].mean(),
                "report_mean": good["_rep"].mean(),
                "n_runs": len(sub),
                "n_dropped": int((~sub["_ok"]).sum()),
            }
        )
    members = pd.DataFrame(rows, columns=group_cols + ["select_mean", "report_mean", "n_runs", "n_dropped"])
    return members.assign(in_set=False)


def _status(comparison, valid: int, select_metric: str) -> str:
    tested = [c for c in comparison.comparisons if c.p is not None]
    if valid == 0:
        return f"untestable: no combination has a finite {select_metric}"
    if valid == 1:
        return "one combination: the set has one member"
    if comparison.status.startswith("untestable") or not tested:
        reason = comparison.status.removeprefix("untestable: ")
        return f"untestable: {reason}; no combination can be excluded"
    if all("cannot reach" in c.reason for c in tested):
        return f"no combination can be excluded: {tested[0].reason}"
    return comparison.status


def best_set(
    frame: pd.DataFrame,
    select_metric: str,
    report_metric: str,
    group_cols,
    confidence: float = 0.95,
    paired_on=("seed",),
    higher_is_better: bool = True,
    n_resamples: int = N_RESAMPLES,
) -> BestSet:
    """The best combination of `group_cols` on `select_metric` (highest mean over the seeds the test uses, or
    lowest) and every combination the max-statistic test within seeds cannot exclude. Runs with a non-finite select
    metric (diverged) are dropped and counted; a combination without any value is not in the set; one that
    could not be tested (too few shared seeds) stays in it. Never raises on degenerate data."""
    group_cols, paired_on = list(group_cols), list(paired_on)
    if len(paired_on) != 1:
        raise ValueError(f"best_set pairs on one unit column (the seed), got {paired_on}")
    alpha = alpha_of(confidence)
    sel = pd.to_numeric(frame[select_metric], errors="coerce").to_numpy(dtype=float)
    rep = pd.to_numeric(frame[report_metric], errors="coerce").to_numpy(dtype=float)
    members = _members(frame, group_cols, sel, rep)
    n_dropped = int(members["n_dropped"].sum())
    valid = members[members["n_runs"] > members["n_dropped"]]
    key = (lambda row: tuple(row)) if len(group_cols) > 1 else (lambda row: row[0])
    keys = [key(r) for r in members[group_cols].itertuples(index=False, name=None)]
    if valid.empty:
        status = f"untestable: no combination has a finite {select_metric}"
        return BestSet(None, members, (), status, n_dropped, None, 0, "", alpha)
    sign = 1.0 if higher_is_better else -1.0
    factor = tuple(group_cols) if len(group_cols) > 1 else group_cols[0]
    found = compare_levels(
        frame.assign(_sel=sel),
        "_sel",
        factor,
        confidence,
        higher_is_better=higher_is_better,
        seed=paired_on[0],
        n_resamples=n_resamples,
    )
    # The best is the best of the levels tested, on the seeds tested (a combination left out of the test for
    # missing runs cannot be best); without any test, the highest mean over the finite runs.
    best = found.best if found.best is not None else keys[members.index.get_loc((sign * valid["select_mean"]).idxmax())]
    excluded = {c.level for c in found.comparisons if c.verdict == "different" and sign * c.estimate < 0}
    members["in_set"] = [k not in excluded and row.n_runs > row.n_dropped for k, row in zip(keys, members.itertuples())]
    comparisons = tuple(c for c in found.comparisons if c.level != best)
    status = _status(found, len(valid), select_metric)
    gap = found.critical if found.critical is None or math.isfinite(found.critical) else math.inf
    best_tuple = best if isinstance(best, tuple) else (best,)
    return BestSet(best_tuple, members, comparisons, status, n_dropped, gap, found.n_units, found.method, alpha)
