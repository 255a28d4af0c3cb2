"""The factorial table with the seed as the unit: a repeated-measures ANOVA, seed as subject.

Every seed runs every combination (init x optimizer), so each effect is tested against its own interaction
with the seed (init against init x seed, and so on), as statsmodels' AnovaRM does; its F and p are equal
(tests/test_stats.py checks). It is computed here from the balanced table's sums of squares because AnovaRM
builds dummy matrices of every seed: 75 s at 833 seeds, against milliseconds. Effects with more than one
degree of freedom also get the Greenhouse-Geisser corrected p (`p_gg`), since the seeds' correlation between
levels (e.g. Adam and SGD moving together) need not be the same for every pair of levels (sphericity): quote
`p_gg`. Missing runs: the seeds without a value in every cell are dropped and counted (a balanced design is
what the test needs); duplicate runs of one cell are averaged.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import linalg
from scipy import stats as sps

COLUMNS = ["source", "df", "df_error", "sum_sq", "sum_sq_error", "F", "p", "epsilon", "p_gg"]
METHOD = (
    "repeated-measures ANOVA, seed as subject: each effect against its interaction with the seed "
    "(Greenhouse-Geisser corrected p for effects with more than one degree of freedom)"
)


@dataclass(frozen=True)
class RepeatedMeasuresAnova:
    table: pd.DataFrame  # COLUMNS; source "init", "optimizer", "init:optimizer"
    factors: tuple  # the factors tested (a factor with one level is left out and named in status)
    testable: bool
    status: str  # "ok", or what was dropped / why nothing could be tested
    n_units: int  # seeds used
    n_dropped_units: int  # seeds left out for a missing (diverged) run
    method: str = METHOD

    def p_of(self, source: str) -> float | None:
        """The Greenhouse-Geisser p of an effect ("init", "init:optimizer", ...); None if not in the table."""
        rows = self.table[self.table["source"] == source]
        return float(rows["p_gg"].iloc[0]) if len(rows) and np.isfinite(rows["p_gg"].iloc[0]) else None

    @property
    def interaction_p(self) -> float | None:
        return self.p_of(":".join(self.factors)) if len(self.factors) >= 2 else None


def _component(y: np.ndarray, axes: tuple) -> np.ndarray:
    """The effect of the axes in `axes` (0 = subject), by inclusion-exclusion over means of y."""
    out = np.zeros(())
    for r in range(len(axes) + 1):
        for kept in itertools.combinations(axes, r):
            others = tuple(a for a in range(y.ndim) if a not in kept)
            out = out + (-1) ** (len(axes) - r) * y.mean(axis=others, keepdims=True)
    return out


def _epsilon(y: np.ndarray, axes: tuple) -> float:
    """Greenhouse-Geisser epsilon of an effect: from the covariance over subjects of orthonormal contrasts."""
    others = tuple(a for a in range(1, y.ndim) if a not in axes)
    cells = y.mean(axis=others) if others else y  # (subjects, *levels of the effect's factors)
    contrast = np.ones((1, 1))
    for a in axes:
        contrast = np.kron(contrast, linalg.helmert(y.shape[a]))
    z = cells.reshape(len(y), -1) @ contrast.T
    if z.shape[1] == 1:
        return 1.0
    cov = np.cov(z, rowvar=False)
    denominator = z.shape[1] * np.trace(cov @ cov)
    return float(np.trace(cov) ** 2 / denominator) if denominator > 0 else float("nan")


def rm_anova_table(y: np.ndarray, names) -> pd.DataFrame:
    """The table of a balanced array y: (subjects, levels of factor 1, levels of factor 2, ...)."""
    rows = []
    total = float(((y - y.mean()) ** 2).sum())
    for r in range(1, y.ndim):
        for axes in itertools.combinations(range(1, y.ndim), r):
            ss = float((np.broadcast_to(_component(y, axes), y.shape) ** 2).sum())
            ss_err = float((np.broadcast_to(_component(y, (0, *axes)), y.shape) ** 2).sum())
            df = int(np.prod([y.shape[a] - 1 for a in axes]))
            df_err = df * (y.shape[0] - 1)
            flat = ss_err <= 1e-12 * total  # no seed-to-seed variation of this effect: F is undefined
            f = np.nan if flat else (ss / df) / (ss_err / df_err)
            p = np.nan if flat else float(sps.f.sf(f, df, df_err))
            eps = 1.0 if df == 1 else _epsilon(y, axes)
            p_gg = np.nan if flat else float(sps.f.sf(f, eps * df, eps * df_err))
            source = ":".join(names[a - 1] for a in axes)
            rows.append([source, df, df_err, ss, ss_err, f, p, eps, p_gg])
    return pd.DataFrame(rows, columns=COLUMNS)


def repeated_measures_anova(
    frame: pd.DataFrame, response: str, factors=("init", "optimizer"), subject: str = "seed"
) -> RepeatedMeasuresAnova:
    """Repeated-measures ANOVA of `response` with `subject` (the seed) as subject. Never raises on degenerate
    data: `testable` False and `status` say why (no runs, one level, one complete seed, no variance)."""
    factors = list(factors)
    y = pd.to_numeric(frame[response], errors="coerce")
    data = frame.loc[np.isfinite(y), [subject, *factors]].assign(_y=y[np.isfinite(y)])
    notes = (
        [f"{int((~np.isfinite(y)).sum())} runs without a finite {response} dropped"] if (~np.isfinite(y)).any() else []
    )
    kept = [f for f in factors if data[f].nunique() >= 2]
    notes += [
        f"{f} has one level ({data[f].iloc[0]}): its effect cannot be estimated"
        for f in factors
        if f not in kept and len(data)
    ]

    def result(testable, why, table=None, used=0, dropped=0):
        status = "; ".join(([f"untestable: {why}"] if why else []) + notes) or "ok"
        return RepeatedMeasuresAnova(
            table if table is not None else pd.DataFrame(columns=COLUMNS), tuple(kept), testable, status, used, dropped
        )

    if data.empty:
        return result(False, "no runs with a value")
    if not kept:
        return result(False, "no factor has two levels")
    cells = data.pivot_table(index=subject, columns=kept, values="_y", aggfunc="mean")
    full = pd.MultiIndex.from_product([list(dict.fromkeys(data[f])) for f in kept]) if len(kept) > 1 else None
    cells = cells.reindex(columns=full if full is not None else list(dict.fromkeys(data[kept[0]])))
    complete = cells.dropna(axis=0, how="any")
    dropped = len(cells) - len(complete)
    if dropped:
        notes.append(f"{dropped} of {len(cells)} seeds without a run in every combination dropped")
    if len(complete) < 2:
        return result(
            False,
            f"{len(complete)} seed(s) with a run in every combination: no seed-to-seed noise",
            used=len(complete),
            dropped=dropped,
        )
    values = complete.to_numpy(dtype=float).reshape(len(complete), *[data[f].nunique() for f in kept])
    if np.ptp(values) <= 1e-12 * max(1.0, float(np.abs(values).max())):
        return result(False, "no variance: all values are identical", used=len(complete), dropped=dropped)
    table = rm_anova_table(values, kept)
    if table["F"].isna().all():
        return result(False, "no seed-to-seed variation of any effect, so F is undefined", None, len(complete), dropped)
    return result(True, "", table, len(complete), dropped)
