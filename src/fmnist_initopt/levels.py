"""Which level of a factor is better, from a table of runs, with the seed as the unit.

Each seed's value for a level is its mean over the other factors (`over`), block by block (units.py); two
levels are compared by the exact sign-flip test over seeds, more by the max-statistic permutation test within
seeds (maxstat.py), which accounts for comparing every level with the best one picked from the same runs.
`compare_levels` answers one question (e.g. which init, pooled over optimizers); `compare_within` answers it
in every scope (e.g. per optimizer, or per depth and optimizer) as one family, with each interval at the level
its comparison was decided at, so no interval contradicts its verdict.

The family's adjustment: within one scope the max-statistic p is already adjusted for comparing every level
with the best, so nothing is added there. Across scopes, Holm's procedure generalised by closed testing: the
local test of any set of comparisons is Bonferroni over the scopes it touches of each scope's max-statistic
test, which is valid because each scope's test controls its own family-wise error. Its shortcut: a scope
counts in the family size until every one of its comparisons is rejected (with one comparison per scope this
is exactly Holm). The record's `adjustment` names it ("Holm over 3 optimizers").
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from fmnist_initopt import maxstat
from fmnist_initopt.signflip import N_RESAMPLES, SEED
from fmnist_initopt.stats import (
    Comparison,
    alpha_of,
    sign_flip_comparison,
    untestable,
    verdict_of,
)
from fmnist_initopt.units import unit_matrix


@dataclass(frozen=True)
class LevelComparison:
    """Every level of `factor` against `reference` (the best level unless one was given), in one scope."""

    factor: str
    scope: dict  # e.g. {"optimizer": "adam"}; {} when pooled
    best: object | None  # the level with the best mean over the tested seeds; None when no level has values
    reference: object | None
    means: dict  # level -> mean over the tested seeds (over every finite run when nothing could be tested)
    comparisons: tuple  # Comparison per other level: level - reference
    critical: float | None  # the smallest gap to the reference the test could exclude (the largest it keeps)
    n_units: int
    method: str
    status: str  # "ok", or what was dropped / why nothing could be tested


@dataclass(frozen=True)
class _Test:
    """One scope's test, kept until the family's Holm levels are known."""

    factor: str
    scope: dict
    matrix: object  # units.UnitMatrix
    reference: object
    best: object
    ranges: np.ndarray | None  # the max-statistic's null ranges (more than two levels)
    p: dict  # level -> p against the reference
    sizes: tuple  # factor sizes of the relabelling (one factor: the number of levels)
    note: str


def _scoped(frame: pd.DataFrame, scope: dict | None) -> pd.DataFrame:
    mask = np.ones(len(frame), dtype=bool)
    for column, value in (scope or {}).items():
        mask &= (frame[column] == value).to_numpy()
    return frame[mask]


def _grid(matrix, factor) -> tuple[object, tuple | None, str]:
    """For levels that are combinations (factor is several columns): the matrix in row-major grid order and the
    factor sizes when every combination is present (relabelled factor by factor), else free relabelling."""
    if isinstance(factor, str) or len(factor) == 1 or len(matrix.levels) < 3:
        return matrix, None, ""
    uniques = [list(dict.fromkeys(level[f] for level in matrix.levels)) for f in range(len(factor))]
    if math.prod(map(len, uniques)) != len(matrix.levels):
        return matrix, None, "incomplete grid: the combinations are relabelled freely within a seed"
    order = sorted(matrix.levels, key=lambda level: [uniques[f].index(level[f]) for f in range(len(factor))])
    columns = [matrix.levels.index(level) for level in order]
    sizes = tuple(len(u) for u in uniques if len(u) > 1)
    return replace(matrix, values=matrix.values[:, columns], levels=order), sizes, ""


def _prepare(frame, response, factor, scope, over, reference, higher_is_better, seed, n_resamples) -> _Test:
    matrix = unit_matrix(_scoped(frame, scope), response, factor, (seed,), over)
    matrix, sizes, grid_note = _grid(matrix, factor)
    levels, values = matrix.levels, matrix.values
    means = values.mean(axis=0) if len(values) else np.array([])
    sign = 1.0 if higher_is_better else -1.0
    best = levels[int(np.argmax(sign * means))] if len(means) else None
    ref = reference if reference is not None else best
    notes = [matrix.note, grid_note]
    if reference is not None and reference not in levels:
        notes.append(f"the reference {reference} has no values to compare with")
    ranges, p = None, {}
    if len(levels) >= 3 and len(values) >= 2 and ref in levels:
        ranges = maxstat.range_distribution(values, sizes, n_resamples, SEED)
        tolerance = maxstat.tolerance_of(values)
        gaps = np.abs(means - means[levels.index(ref)])
        p = dict(zip(levels, maxstat.range_p(ranges, gaps, tolerance)))
    note = "; ".join(filter(None, notes))
    return _Test(factor, dict(scope or {}), matrix, ref, best, ranges, p, sizes or (len(levels),), note)


def _records(
    test: _Test, alpha: float, level_alpha: float, adjusted: dict, adjustment: str, n_resamples: int
) -> list[Comparison]:
    """The comparisons of one scope: intervals at the level the family decided the scope at, verdicts from
    `adjusted` (level -> adjusted p)."""
    m, factor, scope, ref = test.matrix, test.factor, test.scope, test.reference
    if ref is None or ref not in m.levels:
        return []
    out, r = [], m.levels.index(ref)
    for j, level in enumerate(m.levels):
        if level == ref:
            continue
        d = m.values[:, j] - m.values[:, r]
        if len(m.levels) == 2:  # two levels: the sign-flip test and its inverted interval
            c = sign_flip_comparison(
                d,
                alpha,
                n_resamples,
                factor=factor,
                level=level,
                reference=ref,
                scope=scope,
                note=test.note,
                level_alpha=level_alpha,
            )
        elif len(d) < 2:
            c = untestable(
                factor,
                level,
                ref,
                scope,
                len(d),
                float(np.mean(d)) if len(d) else math.nan,
                f"fewer than two seeds; {test.note}".rstrip("; "),
                "max-statistic permutation",
                alpha,
            )
        else:
            critical = float(maxstat.critical_gap(test.ranges, level_alpha, maxstat.tolerance_of(m.values)))
            means = m.values.mean(axis=0)  # the very numbers the p-value's gaps came from (_prepare)
            estimate, p = float(means[j] - means[r]), float(test.p[level])
            sizes = test.sizes
            floor = maxstat.smallest_p(len(d), sizes, n_resamples)
            reason = f"{len(d)} seeds cannot reach p <= {alpha:.3g}: the smallest possible p is {floor:.2g}"
            reason = reason if floor > alpha else ""
            c = Comparison(
                factor,
                level,
                ref,
                scope,
                len(d),
                estimate,
                estimate - critical,
                estimate + critical,
                p,
                p,
                verdict_of(p, alpha),
                "; ".join(filter(None, [reason, test.note])),
                float(np.std(d, ddof=1)),
                f"max-statistic permutation test over {len(m.levels)} levels within {len(d)} seeds "
                f"({'all relabellings' if maxstat.is_exact(len(d), sizes, n_resamples) else f'{n_resamples} random relabellings'}); "
                "interval: estimate +- the critical range",
                alpha,
                smallest_p=floor,
            )
        if c.p is not None and level in adjusted:
            verdict = verdict_of(adjusted[level], alpha)
            c = replace(c, p_adjusted=adjusted[level], verdict=verdict, adjustment=adjustment)
        out.append(c)
    for level in m.dropped_levels + m.empty_levels:
        why = "no finite value" if level in m.empty_levels else "too few seeds shared with the other levels"
        out.append(untestable(factor, level, ref, scope, 0, math.nan, why, "", alpha))
    return out


def _summary(test: _Test, comparisons, alpha: float, n_resamples: int, critical: float | None) -> LevelComparison:
    m = test.matrix
    means = dict(zip(m.levels, m.values.mean(axis=0))) if len(m.values) else {}
    n = len(m.units)
    if not m.levels:
        status = f"untestable: {test.note}"
    elif len(m.levels) < 2:
        status = f"untestable: only one level ({m.levels[0]}) has values" + (f"; {test.note}" if test.note else "")
    elif n < 2:
        status = f"untestable: {'no seed has' if n == 0 else 'only one seed has'} every level" + (
            f"; {test.note}" if test.note else ""
        )
    else:
        status = test.note or "ok"
    methods = {c.method for c in comparisons if c.method}
    return LevelComparison(
        test.factor,
        test.scope,
        test.best,
        test.reference,
        means,
        tuple(comparisons),
        critical,
        n,
        "; ".join(sorted(methods)),
        status,
    )


def _critical(test: _Test, comparisons) -> float | None:
    tested = [c for c in comparisons if c.p is not None]
    if not tested:
        return None
    if test.ranges is not None:
        return float(tested[0].ci_high - tested[0].estimate)
    c = tested[0]  # two levels: the distance from the estimate to the interval's end on the side of 0
    return float(c.ci_high - c.estimate) if c.estimate <= 0 else float(c.estimate - c.ci_low)


def compare_levels(
    frame: pd.DataFrame,
    response: str,
    factor: str,
    confidence: float = 0.95,
    *,
    over=(),
    scope: dict | None = None,
    reference=None,
    higher_is_better: bool = True,
    seed: str = "seed",
    n_resamples: int = N_RESAMPLES,
) -> LevelComparison:
    """Each level of `factor` against the best (or `reference`), pooled over `over` seed by seed, in `scope`.

    E.g. the init answer: compare_levels(runs, "test_accuracy", "init", over=("optimizer",)); the optimizer
    answer: compare_levels(runs, "test_accuracy", "optimizer", over=("init",)). Never raises on degenerate data:
    `status` and each comparison's `reason` say what happened."""
    return compare_within(
        frame,
        response,
        factor,
        (),
        confidence,
        over=over,
        scope=scope,
        reference=reference,
        higher_is_better=higher_is_better,
        seed=seed,
        n_resamples=n_resamples,
    )[0]


def compare_within(
    frame: pd.DataFrame,
    response: str,
    factor: str,
    by,
    confidence: float = 0.95,
    *,
    over=(),
    scope: dict | None = None,
    reference=None,
    higher_is_better: bool = True,
    seed: str = "seed",
    n_resamples: int = N_RESAMPLES,
) -> tuple[LevelComparison, ...]:
    """compare_levels in every scope given by the columns `by` (e.g. ("optimizer",) or ("depth", "optimizer")),
    as ONE family over the scopes (holm_over_scopes: Holm across scopes, nothing added within a scope whose
    max-statistic p already accounts for choosing the best); scopes in order of first appearance.

    The per-optimizer init comparisons: compare_within(runs, "test_accuracy", "init", ("optimizer",)); the
    depth section's: compare_within(runs, metric, "init", ("depth", "optimizer")), and pooled per depth:
    compare_within(runs, metric, "init", ("depth",), over=("optimizer",))."""
    alpha = alpha_of(confidence)
    by = [by] if isinstance(by, str) else list(by)
    base = _scoped(frame, scope)
    keys = list(base[by].drop_duplicates().itertuples(index=False, name=None)) if by else [()]
    tests = [
        _prepare(
            base,
            response,
            factor,
            {**(scope or {}), **dict(zip(by, key))},
            over,
            reference,
            higher_is_better,
            seed,
            n_resamples,
        )
        for key in keys
    ]
    first = [_records(t, alpha, alpha, {}, "", n_resamples) for t in tests]  # p-values at the family-of-one level
    p = [{c.level: c.p for c in records if c.p is not None} for records in first]
    levels_alpha, adjusted = holm_over_scopes(p, alpha)
    testable = sum(map(bool, p))
    adjustment = f"Holm over {testable} {_scopes_noun(by)}" if testable > 1 else ""
    out = []
    for test, level_alpha, adjusted_p in zip(tests, levels_alpha, adjusted):
        records = _records(test, alpha, level_alpha, adjusted_p, adjustment, n_resamples)
        out.append(_summary(test, records, alpha, n_resamples, _critical(test, records)))
    return tuple(out)


def _scopes_noun(by: list) -> str:
    """How the family's scopes are named in an adjustment: "optimizers", "(depth, optimizer) cells"."""
    return f"{by[0]}s" if len(by) == 1 else f"({', '.join(by)}) cells"


def holm_over_scopes(p: list[dict], alpha: float) -> tuple[list[float], list[dict]]:
    """Per scope, the level its intervals are computed at and each comparison's adjusted p (level -> p), from
    the scopes' p-values (level -> p; a max-statistic p is already adjusted within its scope; {} = untestable).

    Closed testing (module docstring): comparison i of scope j is kept by the worst set of comparisons holding
    it, i plus the least significant comparison of m - 1 other scopes, whose local test rejects when m times
    its smallest p is <= alpha. So its adjusted p is max over m of min(m p_i, m M_(m-1)), M_(k) the k-th
    largest of the other scopes' largest p; and it is rejected exactly when p_i <= alpha / m*, m* the largest m
    with m M_(m-1) > alpha: that level makes its interval agree with its verdict. One comparison per scope:
    Holm (p_adjusted equal to stats.holm_adjusted); one scope: p itself."""
    largest = [max(scope.values()) if scope else math.nan for scope in p]
    testable = [j for j, scope in enumerate(p) if scope]
    levels_alpha, adjusted = [alpha] * len(p), [{} for _ in p]
    for j in testable:
        others = sorted((largest[k] for k in testable if k != j), reverse=True)
        bounds = [math.inf] + [m * others[m - 2] for m in range(2, len(testable) + 1)]  # m M_(m-1), m = 1, 2, ...
        widest = max(m for m, bound in enumerate(bounds, start=1) if bound > alpha)
        levels_alpha[j] = alpha / widest
        adjusted[j] = {
            level: float(min(1.0, max(min(m * value, bound) for m, bound in enumerate(bounds, start=1))))
            for level, value in p[j].items()
        }
    return levels_alpha, adjusted


def seed_differences(
    frame: pd.DataFrame, response: str, factor: str, level, reference, *, over=(), scope=None, seed: str = "seed"
) -> pd.Series:
    """level - reference per seed (the unit), each the mean over the complete blocks of `over`; index: seed."""
    scoped = _scoped(frame, scope)
    matrix = unit_matrix(scoped[scoped[factor].isin([level, reference])], response, factor, (seed,), over)
    if level not in matrix.levels or reference not in matrix.levels:
        return pd.Series([], dtype=float, name=response)
    values = matrix.values[:, matrix.levels.index(level)] - matrix.values[:, matrix.levels.index(reference)]
    return pd.Series(values, index=pd.Index(matrix.units, name=seed), name=response)


@dataclass(frozen=True)
class SeedCorrelation:
    """How alike one seed's level - reference differences are across the levels of `across`."""

    mean: float  # mean of the pairwise Pearson correlations
    pairs: dict  # (across level a, across level b) -> Pearson r over seeds
    factor: str
    level: object
    reference: object
    across: str
    n_units: int  # seeds with a difference under every compared level of `across`


def within_seed_correlation(
    frame: pd.DataFrame, response: str, factor: str, level, reference, across: str, seed: str = "seed"
) -> SeedCorrelation | None:
    """Mean pairwise Pearson correlation over seeds of the per-seed level - reference differences under each
    level of `across` (e.g. Xavier - He under Adam, SGD and RMSprop). None when it cannot be computed: fewer than
    two levels of `across`, fewer than three seeds with every difference, or a difference that does not vary."""
    scoped = frame[frame[factor].isin([level, reference])]
    y = pd.to_numeric(scoped[response], errors="coerce")
    data = scoped.assign(_y=y).pivot_table(index=seed, columns=[across, factor], values="_y", aggfunc="mean")
    if level not in data.columns.get_level_values(factor) or reference not in data.columns.get_level_values(factor):
        return None
    wide = (data.xs(level, axis=1, level=factor) - data.xs(reference, axis=1, level=factor)).dropna(axis=1, how="all")
    wide = wide.dropna(axis=0, how="any")
    if wide.shape[1] < 2 or len(wide) < 3 or (wide.std(ddof=1) <= 0).any():
        return None
    pairs = {
        (a, b): float(np.corrcoef(wide[a], wide[b])[0, 1]) for a, b in itertools.combinations(list(wide.columns), 2)
    }
    return SeedCorrelation(float(np.mean(list(pairs.values()))), pairs, factor, level, reference, across, len(wide))
