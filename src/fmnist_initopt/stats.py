"""The decision rule behind every section of findings.md, and the record each comparison is reported as.

Design facts the statistics rely on: runs are (init, optimizer, seed), and a seed fixes the data order and the
initial draws for every optimizer, so runs that share a seed are not independent: the SEED is the unit of every
test. Seeds are few (1-10) and metrics may be integers or constant across seeds, so p-values come from exact
sign-flip or permutation tests over seeds (never 0, even with zero variance), every interval is the set of
shifts the same test keeps (so the interval excludes 0 exactly when p <= alpha), and a family of comparisons
is Holm-corrected at alpha = 1 - confidence (never on top of a max-statistic p within its own scope). The statistics live in one module per concern:

* `signflip`: the exact sign-flip test over units and its inverted interval (vectorised);
* `best`: the max-statistic permutation test over several levels within seeds, and the best set;
* `levels`: comparisons of levels from a table of runs, pooled over the other factors seed by seed;
* `anova`: the repeated-measures table with the seed as subject;
* `power`: the minimum detectable effect of the exact test and the seeds a target needs.

This module holds what they share: the record, alpha, the verdict, Holm, and the paired test of two aligned
samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import stats as sps

from fmnist_initopt.signflip import N_RESAMPLES, exact_units, sign_flip, smallest_p

VERDICTS = ("different", "not detected", "untestable")
UNIT = "seed"


def alpha_of(confidence: float) -> float:
    """alpha = 1 - confidence; a confidence outside (0, 1) is a configuration error, so it raises."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return round(1.0 - confidence, 12)  # 1 - 0.95 is 0.050000000000000044 in floats


def verdict_of(p: float | None, alpha: float) -> str:
    """The one decision rule: "different" iff p <= alpha; "untestable" without a p-value."""
    if p is None or not math.isfinite(p):
        return "untestable"
    return "different" if p <= alpha else "not detected"


def display_p(p: float, alpha: float, digits: int = 2) -> float:
    """p rounded to `digits` significant digits, or more when fewer would put it on the other side of alpha
    or onto alpha itself: display_p(0.0498, 0.05) is 0.0498, never 0.05. Formatting is the caller's."""
    if not math.isfinite(p) or p <= 0:
        return p
    for places in range(digits, 18):
        shown = float(f"{p:.{places}g}")
        if verdict_of(shown, alpha) == verdict_of(p, alpha) and (shown == alpha) == (p == alpha):
            return shown
    return p


@dataclass(frozen=True)
class Comparison:
    """One difference, level - reference, with the seed as the unit: what it compares, its estimate, the
    interval of the same test, p-values and verdict. `scope` names the subset it was computed in ({} = pooled
    over every other factor, e.g. {"optimizer": "adam"} within one optimizer)."""

    factor: object  # a column name, or a tuple of names for combinations (levels are then tuples)
    level: object
    reference: object
    scope: dict
    n_units: int
    estimate: float  # mean over units of level - reference, in the response's units
    ci_low: float  # the shifts the test keeps (consistent with p_adjusted); +-inf if nothing can be rejected
    ci_high: float
    p: float | None  # None when untestable
    p_adjusted: float | None  # adjusted within its family (== p for a family of one)
    verdict: str  # one of VERDICTS, from p_adjusted <= alpha
    reason: str = ""  # why untestable, or why no effect could have been detected
    spread: float = math.nan  # sd of the unit-level differences
    method: str = ""
    alpha: float = 0.05
    unit: str = UNIT
    # What p_adjusted adds to p, to be named beside it ("Holm over 3 optimizers"); "" when p_adjusted is p (a
    # family of one, or one scope's max-statistic test, whose p already accounts for choosing the best).
    adjustment: str = ""
    smallest_p: float | None = None  # the smallest p this comparison's own test can give at n_units (None: untested)
    # The unit-level differences of a sign-flip record and its resample count: what holm() needs to recompute
    # the interval at the level Holm decides at. Not part of what the record compares or shows.
    differences: tuple = field(default=(), compare=False, repr=False)
    n_resamples: int = field(default=N_RESAMPLES, compare=False, repr=False)


def untestable(factor, level, reference, scope, n_units, estimate, reason, method, alpha) -> Comparison:
    nan = math.nan
    return Comparison(
        factor,
        level,
        reference,
        dict(scope or {}),
        n_units,
        estimate,
        nan,
        nan,
        None,
        None,
        "untestable",
        reason,
        nan,
        method,
        alpha,
    )


def mean_interval(values, confidence: float = 0.95) -> tuple[float, float]:
    """Student-t interval of one mean over seeds: a description of one combination, not a comparison.

    NaN values (diverged runs) are ignored; NaN bounds with fewer than two values; [m, m] without spread.
    """
    sample = np.asarray(values, dtype=float).ravel()
    sample = sample[np.isfinite(sample)]
    if sample.size < 2:
        return math.nan, math.nan
    mean, sem = float(sample.mean()), float(sps.sem(sample))
    if float(np.ptp(sample)) <= 1e-12 * max(1.0, float(np.max(np.abs(sample)))) or sem == 0:
        return mean, mean
    low, high = sps.t.interval(confidence, sample.size - 1, loc=mean, scale=sem)
    return float(low), float(high)


# ---------------------------------------------------------------------------------------------- Holm


def holm_adjusted(p_values, axis: int = -1) -> np.ndarray:
    """Holm step-down adjusted p-values along `axis` (leading axes are separate families), in input order.
    NaN marks an untestable comparison: it stays NaN and does not count in its family's size. Equal to
    statsmodels' multipletests(method="holm"), which also runs a full gc.collect() per call."""
    p = np.moveaxis(np.asarray(p_values, dtype=float), axis, -1)
    order = np.argsort(p, axis=-1, kind="stable")  # NaN sort last
    ranked = np.take_along_axis(p, order, axis=-1)
    size = np.isfinite(p).sum(axis=-1, keepdims=True)
    steps = size - np.arange(p.shape[-1])
    adjusted_ranked = np.minimum(1.0, np.maximum.accumulate(np.where(np.isnan(ranked), -np.inf, ranked * steps), -1))
    adjusted_ranked = np.where(np.isnan(ranked), np.nan, adjusted_ranked)
    adjusted = np.empty_like(adjusted_ranked)
    np.put_along_axis(adjusted, order, adjusted_ranked, axis=-1)
    return np.moveaxis(adjusted, -1, axis)


def holm_levels(p_values, alpha: float) -> np.ndarray:
    """Per comparison, the level at which Holm's step-down tested it: alpha / (m - r + 1) for the r-th smallest
    p while every earlier step rejected, and the first failing step's level after that. So p <= level exactly
    when the Holm-adjusted p <= alpha, and an interval at 1 - level agrees with the Holm verdict. 1-D; NaN
    (untestable) entries get NaN."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")  # NaN sort last
    size = int(np.isfinite(p).sum())
    multipliers = size - np.arange(size)
    steps = alpha / multipliers  # the level of each step, smallest p first
    failed = p[order[:size]] * multipliers > alpha  # the very products holm_adjusted compares with alpha
    first_fail = int(np.argmax(failed)) if failed.any() else size
    levels = np.full(p.size, np.nan)
    levels[order[:size]] = np.where(
        np.arange(size) < first_fail, steps, steps[min(first_fail, size - 1)] if size else 0
    )
    return levels


def holm(comparisons, confidence: float | None = None) -> list[Comparison]:
    """Holm-adjust one family of records; "different" iff p_adjusted <= alpha. A sign-flip record's interval is
    recomputed at the level Holm decided it at (holm_levels), so it still excludes 0 exactly when the verdict is
    "different"; records without their differences keep their interval."""
    out = list(comparisons)
    idx = [i for i, c in enumerate(out) if c.verdict != "untestable" and c.p is not None]
    if not idx:
        return out
    alpha = alpha_of(confidence) if confidence is not None else out[idx[0]].alpha
    p = [out[i].p for i in idx]
    adjustment = f"Holm over {len(idx)} comparisons" if len(idx) > 1 else ""
    for i, p_adj, level in zip(idx, holm_adjusted(p), holm_levels(p, alpha)):
        verdict = verdict_of(float(p_adj), alpha)
        c = replace(out[i], p_adjusted=float(p_adj), verdict=verdict, alpha=alpha, adjustment=adjustment)
        if c.differences:
            flips = sign_flip(np.asarray(c.differences), level, c.n_resamples)
            c = replace(c, ci_low=float(flips.ci_low), ci_high=float(flips.ci_high))
        out[i] = c
    return out


# ---------------------------------------------------------------------------------------------- two samples


def cannot_reach(n_units: int, alpha: float, n_resamples: int = N_RESAMPLES, unit: str = UNIT) -> str:
    """The reason a test over n units can never reject at alpha, or "" when it can."""
    floor = smallest_p(n_units, n_resamples)
    if floor <= alpha:
        return ""
    return (
        f"{n_units} {unit}{'s' * (n_units != 1)} cannot reach p <= {alpha:.3g}: the smallest possible p is {floor:.2g}"
    )


def paired_difference(
    a,
    b,
    confidence: float = 0.95,
    n_resamples: int = N_RESAMPLES,
    *,
    factor: object = "",
    level: object = "a",
    reference: object = "b",
    scope: dict | None = None,
    unit: str = UNIT,
) -> Comparison:
    """Mean of a - b over aligned units (same seed), exact sign-flip test and the interval that inverts it.

    Units with a non-finite value (diverged runs) are dropped and counted in `reason`. Constant differences
    give the exact p (2 / 2**n for identical non-zero differences), never 0, and a degenerate interval.
    """
    alpha = alpha_of(confidence)
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired samples must be aligned, got {a.size} and {b.size} values")
    keep = np.isfinite(a) & np.isfinite(b)
    d = a[keep] - b[keep]
    dropped = f"{int((~keep).sum())} incomplete {unit}s dropped" if (~keep).any() else ""
    return sign_flip_comparison(
        d, alpha, n_resamples, factor=factor, level=level, reference=reference, scope=scope, unit=unit, note=dropped
    )


def sign_flip_comparison(
    d,
    alpha: float,
    n_resamples: int = N_RESAMPLES,
    *,
    factor,
    level,
    reference,
    scope=None,
    unit=UNIT,
    note="",
    level_alpha: float | None = None,
) -> Comparison:
    """The record of one sign-flip test of unit-level differences `d` (finite), its interval at 1 - level_alpha
    (default alpha: a family of one; pass the Holm level within a family, with p_adjusted set afterwards)."""
    d = np.asarray(d, dtype=float)
    n = int(d.size)
    estimate = float(d.mean()) if n else math.nan
    flips = f"{n_resamples} random sign flips" if n > exact_units(n_resamples) else "all sign flips"
    method = f"sign-flip test over {n} {unit}{'s' * (n != 1)} ({flips}), interval by inverting it"
    if n < 2:
        why = f"no complete {unit}s" if n == 0 else f"only one {unit}: no {unit}-to-{unit} noise to compare against"
        return untestable(
            factor, level, reference, scope, n, estimate, "; ".join(filter(None, [why, note])), method, alpha
        )
    result = sign_flip(d, alpha if level_alpha is None else level_alpha, n_resamples)
    p = float(result.p)
    reason = "; ".join(filter(None, [cannot_reach(n, alpha, n_resamples, unit), note]))
    return Comparison(
        factor,
        level,
        reference,
        dict(scope or {}),
        n,
        estimate,
        float(result.ci_low),
        float(result.ci_high),
        p,
        p,
        verdict_of(p, alpha),
        reason,
        float(result.spread),
        method,
        alpha,
        unit,
        smallest_p=smallest_p(n, n_resamples),
        differences=tuple(d.tolist()),
        n_resamples=n_resamples,
    )


def decision_rule_text(confidence: float = 0.95) -> str:
    """The one sentence the report's Methods quote: the real alpha, the unit and the single decision rule."""
    alpha, level = alpha_of(confidence), f"{round(confidence * 100, 10):g}%"
    return (
        f"Every comparison uses one rule at alpha = {alpha:g} ({level} confidence): the unit is the seed (a seed "
        "fixes the data order and the initial draws for every optimizer, so runs that share one are not "
        "independent); a comparison pooled over other factors first averages each seed's differences over them, "
        "then tests the mean over seeds with an exact sign-flip test (a max-statistic permutation test within "
        "seeds when several levels are compared, whose p already accounts for choosing the best, so nothing more "
        "is applied within one question); where one question is asked in several scopes (per optimizer, per depth), "
        "the p-values are Holm-corrected across the scopes (a scope counts in the family until all of its "
        f'comparisons are rejected); a difference is called "different" only when its adjusted p <= {alpha:g} and '
        'otherwise "not detected" (not evidence of equality); each interval is the set of shifts '
        "the same test keeps at the level it was decided at, so it excludes 0 exactly when the verdict is "
        'different; comparisons with fewer than two seeds are "untestable".'
    )
