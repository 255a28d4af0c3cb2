"""The one statistics module and decision rule behind every section of findings.md.

Design facts it relies on: runs are (init, optimizer, seed), and a seed fixes the data order for every init, so
init comparisons are PAIRED on (optimizer, seed). Seeds are few (1-10) and metrics may be integers or constant
across seeds, so p-values come from exact permutation tests (never 0, even with zero variance), intervals from the
bootstrap, and each family of comparisons is Holm-corrected at alpha = 1 - confidence.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import stats as sps
from statsmodels.formula.api import ols
from statsmodels.stats.anova import anova_lm
from statsmodels.stats.power import TTestPower

VERDICTS = ("different", "not detected", "untestable")
N_RESAMPLES = 9999  # >= 2**13, so sign-flip tests are exact up to 13 pairs
_SEED = 0  # fixed resampling seed: the same results give the same report, run after run
_TABLE_COLUMNS = ["source", "df", "sum_sq", "F", "p"]


@dataclass(frozen=True)
class Comparison:
    """One difference (estimate = mean of a - b, in the metric's units), its CI, p-values and verdict."""

    label: str
    estimate: float
    ci_low: float
    ci_high: float
    p_value: float | None  # None when untestable
    p_adjusted: float | None  # Holm within its family (a family of one until holm() is applied)
    n: int | tuple[int, int]  # pairs, or the two group sizes
    method: str
    verdict: str  # one of VERDICTS
    reason: str = ""  # why untestable, or why significance is out of reach
    alpha: float = 0.05


def alpha_of(confidence: float) -> float:
    """alpha = 1 - confidence; a confidence outside (0, 1) is a configuration error, so it raises."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return round(1.0 - confidence, 12)  # 1 - 0.95 is 0.050000000000000044 in floats; p = 0.05 must not pass


def _constant(x: np.ndarray) -> bool:
    # Float subtraction leaves ~1e-16 noise on "identical" differences; treat that as constant.
    return x.size > 0 and float(np.ptp(x)) <= 1e-12 * max(1.0, float(np.max(np.abs(x))))


def mean_interval(values, confidence: float = 0.95) -> tuple[float, float]:
    """Student-t interval of one mean over seeds: a description of one combination, not a comparison.

    NaN values (diverged runs) are ignored; NaN bounds with fewer than two values; [m, m] without spread.
    """
    sample = np.asarray(values, dtype=float).ravel()
    sample = sample[np.isfinite(sample)]
    if sample.size < 2:
        return math.nan, math.nan
    mean, sem = float(sample.mean()), float(sps.sem(sample))
    if _constant(sample) or sem == 0:
        return mean, mean
    low, high = sps.t.interval(confidence, sample.size - 1, loc=mean, scale=sem)
    return float(low), float(high)


def _mean(x, axis=-1):
    return np.mean(x, axis=axis)


def _mean_diff(x, y, axis=-1):
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def _bootstrap_ci(samples: tuple, statistic, confidence: float, n_resamples: int) -> tuple[float, float]:
    """BCa bootstrap CI; BCa is undefined for few distinct values (NaN or error), so fall back to percentile."""
    for method in ("BCa", "percentile"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = sps.bootstrap(
                    samples,
                    statistic,
                    confidence_level=confidence,
                    method=method,
                    vectorized=True,
                    n_resamples=n_resamples,
                    rng=np.random.default_rng(_SEED),
                )
            low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
            if math.isfinite(low) and math.isfinite(high):
                return low, high
        except Exception:  # noqa: BLE001 - any bootstrap failure means "try the simpler interval"
            continue
    return math.nan, math.nan


def _permutation_p(samples: tuple, statistic, kind: str, n_resamples: int) -> float:
    # scipy enumerates all permutations (exact test) whenever there are no more than n_resamples of them.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sps.permutation_test(
            samples,
            statistic,
            permutation_type=kind,
            n_resamples=n_resamples,
            vectorized=True,
            alternative="two-sided",
            rng=np.random.default_rng(_SEED),
        )
    return min(1.0, float(res.pvalue))


def _result(label, estimate, ci, p, n, method, floor, alpha, reason="") -> Comparison:
    if floor > alpha:  # the test cannot reject at this alpha however large the effect: say so
        count = f"{n} pairs" if isinstance(n, int) else f"groups of {n[0]} and {n[1]}"
        reason = "; ".join(
            filter(None, [f"{count} cannot reach p < {alpha:g}: the smallest possible p is {floor:.2g}", reason])
        )
    verdict = "different" if p < alpha else "not detected"
    return Comparison(label, float(estimate), ci[0], ci[1], p, p, n, method, verdict, reason, alpha)


def _untestable(label, estimate, n, method, reason, alpha) -> Comparison:
    return Comparison(label, float(estimate), math.nan, math.nan, None, None, n, method, "untestable", reason, alpha)


def paired_difference(a, b, confidence: float = 0.95, n_resamples: int = N_RESAMPLES, label: str = "a - b"):
    """Mean of a - b over aligned pairs (same seed), tested by an exact sign-flip permutation test.

    Pairs with a non-finite value (diverged runs) are dropped. Constant differences give the degenerate CI [d, d]
    and the exact permutation p (2 / 2**n for identical non-zero differences), never 0. Note: with under ~10 pairs
    the bootstrap CI is narrower than its nominal level; the p-value, not the CI, carries the verdict.
    """
    alpha = alpha_of(confidence)
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired samples must be aligned, got {a.size} and {b.size} values")
    keep = np.isfinite(a) & np.isfinite(b)
    d = a[keep] - b[keep]
    n = int(d.size)
    estimate = float(np.mean(d)) if n else math.nan
    dropped = f"{int((~keep).sum())} incomplete pairs dropped" if (~keep).any() else ""
    exact = 2.0**n <= n_resamples
    method = f"paired permutation{'' if exact else f' ({n_resamples} sign flips)'}, {n} pair{'s' * (n != 1)}"
    if n < 2:
        why = "no complete pairs" if n == 0 else "only one pair: no seed-to-seed noise to compare against"
        return _untestable(label, estimate, n, method, "; ".join(filter(None, [why, dropped])), alpha)
    p = _permutation_p((d,), _mean, "samples", n_resamples)
    ci = (estimate, estimate) if _constant(d) else _bootstrap_ci((d,), _mean, confidence, n_resamples)
    return _result(label, estimate, ci, p, n, method, min(1.0, 2.0 / 2.0**n), alpha, dropped)


def independent_difference(a, b, confidence: float = 0.95, n_resamples: int = N_RESAMPLES, label: str = "a - b"):
    """Difference of means of two unpaired groups (e.g. two optimizers in the sweep): permutation test + bootstrap."""
    alpha = alpha_of(confidence)
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    n = (int(a.size), int(b.size))
    estimate = float(np.mean(a) - np.mean(b)) if min(n) else math.nan
    arrangements = math.comb(sum(n), n[0])
    kind = "permutation" if arrangements <= n_resamples else f"permutation ({n_resamples} shuffles)"
    method = f"independent {kind}, {n[0]} vs {n[1]} values"
    if min(n) < 2:
        return _untestable(
            label,
            estimate,
            n,
            method,
            f"a group has {min(n)} value(s): no seed-to-seed noise to compare against",
            alpha,
        )
    p = _permutation_p((a, b), _mean_diff, "independent", n_resamples)
    both_constant = _constant(a) and _constant(b)
    ci = (estimate, estimate) if both_constant else _bootstrap_ci((a, b), _mean_diff, confidence, n_resamples)
    return _result(label, estimate, ci, p, n, method, min(1.0, 2.0 / arrangements), alpha)


def holm_adjusted(p_values) -> np.ndarray:
    """Holm step-down adjusted p-values, in the input order (as statsmodels' multipletests(method="holm"),
    which also runs a full gc.collect() per call: ~0.2 s each in a report that adjusts dozens of families)."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    steps = np.arange(p.size, 0, -1)
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(p[order] * steps))
    return adjusted


def holm(comparisons, confidence: float | None = None) -> list[Comparison]:
    """Holm-adjust one family; "different" iff p_adjusted < alpha (from `confidence`, else the comparisons')."""
    out = list(comparisons)
    idx = [i for i, c in enumerate(out) if c.verdict != "untestable" and c.p_value is not None]
    if not idx:
        return out
    alpha = alpha_of(confidence) if confidence is not None else out[idx[0]].alpha
    adjusted = holm_adjusted([out[i].p_value for i in idx])
    for i, p_adj in zip(idx, adjusted):
        p_adj = float(p_adj)
        out[i] = replace(
            out[i], p_adjusted=p_adj, verdict="different" if p_adj < alpha else "not detected", alpha=alpha
        )
    return out


def minimum_detectable_effect(sd_of_differences: float, n: int, alpha: float = 0.05, power: float = 0.8):
    """Smallest true mean paired difference detected with `power` by a two-sided test on n pairs (noncentral t).

    None when it cannot be estimated (n < 2, sd 0 or NaN). math.inf when n pairs are too few for the exact
    sign-flip test to reach p < alpha at all (2 / 2**n > alpha): then no effect, however large, is detectable.
    Pass the Holm-adjusted alpha (e.g. alpha / family size) for the worst case within a family.
    """
    if n is None or n < 2 or not (sd_of_differences or 0) > 0 or not math.isfinite(sd_of_differences):
        return None
    if 2.0 / 2.0**n > alpha:
        return math.inf
    try:
        d = TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power, alternative="two-sided")
    except Exception:  # noqa: BLE001 - root finding can fail at extreme inputs; "unknown" is the honest answer
        return None
    d = float(np.squeeze(d))
    return d * float(sd_of_differences) if math.isfinite(d) else None


def seeds_for_mde(
    sd_of_differences: float,
    pairs_per_seed: int,
    target: float,
    alpha: float = 0.05,
    power: float = 0.8,
    max_seeds: int = 100,
):
    """Smallest seed count whose MDE (n = seeds * pairs_per_seed pairs) is <= target; None if not within max_seeds."""
    if target is None or not target > 0 or pairs_per_seed < 1:
        return None
    for seeds in range(1, max_seeds + 1):
        mde = minimum_detectable_effect(sd_of_differences, seeds * pairs_per_seed, alpha, power)
        if mde is not None and mde <= target:
            return seeds
    return None


@dataclass(frozen=True)
class AnovaResult:
    """Two-way ANOVA with a seed block. `testable` False means the table is empty and `status` says why."""

    table: pd.DataFrame  # source, df, sum_sq, F, p (Type II)
    main_effects: dict  # factor -> DataFrame(level, mean, n, diff_vs_best) in response units
    interaction_p: float | None
    status: str  # "ok", or what was dropped / why nothing could be tested
    testable: bool
    n_used: int
    n_dropped: int


def _main_effects(data: pd.DataFrame, response: str, factors, higher_is_better: bool) -> dict:
    # Level means are means of cell means, so a missing (diverged) run does not tilt one level's mix of optimizers.
    out = {}
    if data.empty:
        return out
    cells = data.groupby(list(factors))[response].mean()
    for f in factors:
        means = cells.groupby(level=f).mean()
        best = means.max() if higher_is_better else means.min()
        counts = data.groupby(f)[response].size().reindex(means.index)
        out[f] = pd.DataFrame(
            {
                "level": means.index,
                "mean": means.to_numpy(),
                "n": counts.to_numpy(),
                "diff_vs_best": (means - best).to_numpy(),
            }
        )
    return out


def factorial_anova(
    frame: pd.DataFrame,
    response: str,
    factors=("init", "optimizer"),
    block: str | None = "seed",
    higher_is_better: bool = True,
) -> AnovaResult:
    """OLS `C(init)*C(optimizer) + C(seed)` with a Type II table. Never raises on degenerate data.

    Single-level factors are dropped (and named in status); an interaction with empty cells is not estimable, so the
    additive model is used; no residual df, zero variance or an exact fit give testable=False with the reason.
    """
    factors = list(factors)
    empty = pd.DataFrame(columns=_TABLE_COLUMNS)
    cols = factors + ([block] if block else [])
    data = frame[cols].copy()
    y = pd.to_numeric(frame[response], errors="coerce").to_numpy(dtype=float)
    ok = np.isfinite(y)
    data, n_dropped = data[ok], int((~ok).sum())
    data[response] = y[ok]
    notes = [f"{n_dropped} runs without a finite {response} dropped"] if n_dropped else []
    main = _main_effects(data, response, factors, higher_is_better)

    def untestable(why):
        return AnovaResult(empty, main, None, "; ".join([f"untestable: {why}"] + notes), False, len(data), n_dropped)

    if data.empty:
        return untestable("no runs with a value")
    kept = [f for f in factors if data[f].nunique() >= 2]
    notes += [
        f"{f} has one level ({data[f].iloc[0]}): its effect cannot be estimated" for f in factors if f not in kept
    ]
    use_block = bool(block) and data[block].nunique() >= 2
    if block and not use_block:
        notes.append(f"one {block}: no {block} block in the model")
    if _constant(data[response].to_numpy()):
        return untestable("no variance: all values are identical, so there is nothing to test")
    if not kept:
        return untestable("no factor has two levels")
    interaction = len(kept) >= 2
    if interaction:
        full = int(np.prod([data[f].nunique() for f in kept]))
        present = len(data.groupby(kept).size())
        if present < full:
            interaction = False
            notes.append(f"{full - present} of {full} factor combinations have no runs: additive model, no interaction")
    # Safe column names: factor names need no quoting in the formula, and levels are categorical strings.
    names = {f: f"f{i}" for i, f in enumerate(kept)}
    safe = pd.DataFrame({names[f]: data[f].astype(str).to_numpy() for f in kept})
    safe["y"] = data[response].to_numpy()
    terms = [f"C({names[f]})" for f in kept]
    rhs = ("*" if interaction else " + ").join(terms)
    if use_block:
        safe["blk"] = data[block].astype(str).to_numpy()
        rhs += " + C(blk)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = ols(f"y ~ {rhs}", safe).fit()
            if model.df_resid < 1:
                return untestable(
                    f"no residual degrees of freedom ({len(safe)} runs, {len(safe) - int(model.df_resid)}"
                    " parameters): no seed-to-seed noise to test against"
                )
            if model.ssr <= 1e-12 * model.centered_tss:
                return untestable("no run-to-run variation left within combinations, so F is undefined")
            anova = anova_lm(model, typ=2)
    except Exception as exc:  # noqa: BLE001 - the report must still render; the status carries the failure
        return untestable(f"model could not be fitted ({type(exc).__name__}: {exc})")
    back = {f"C({v})": k for k, v in names.items()} | {"C(blk)": block, "Residual": "residual"}
    source = [
        ":".join(back.get(part, part) for part in term.replace("):C(", ")|C(").split("|")) for term in anova.index
    ]
    table = pd.DataFrame(
        {
            "source": source,
            "df": anova["df"].to_numpy(),
            "sum_sq": anova["sum_sq"].to_numpy(),
            "F": anova["F"].to_numpy(),
            "p": anova["PR(>F)"].to_numpy(),
        }
    )
    inter = table.loc[table["source"].str.contains(":"), "p"]
    interaction_p = float(inter.iloc[0]) if len(inter) else None
    return AnovaResult(table, main, interaction_p, "; ".join(notes) or "ok", True, len(data), n_dropped)


@dataclass(frozen=True)
class InitEffects:
    """Each init vs the best-mean init: pooled over optimizers (one Holm family) and per optimizer (one family)."""

    reference: object
    pooled: tuple
    per_optimizer: tuple
    status: str


def pairwise_init_effects(
    frame: pd.DataFrame,
    response: str,
    confidence: float = 0.95,
    init: str = "init",
    optimizer: str = "optimizer",
    seed: str = "seed",
    higher_is_better: bool = True,
    n_resamples: int = N_RESAMPLES,
) -> InitEffects:
    """Paired init differences (other - reference) on (optimizer, seed); k - 1 comparisons, so it scales with k.

    The per-optimizer comparisons form ONE family across all optimizers, since the report scans them all for
    "where does init matter".
    """
    y = pd.to_numeric(frame[response], errors="coerce")
    data = frame.loc[np.isfinite(y), [init, optimizer, seed]].assign(_y=y[np.isfinite(y)])
    if data[init].nunique() < 2:
        return InitEffects(None, (), (), "fewer than two inits with values: nothing to compare")
    means = data.groupby([init, optimizer])["_y"].mean().groupby(level=init).mean()
    means = means.sort_values(ascending=not higher_is_better)
    ref = means.index[0]
    wide = data.pivot_table(index=[optimizer, seed], columns=init, values="_y", aggfunc="mean")
    pooled, per = [], []
    for other in means.index[1:]:
        pooled.append(paired_difference(wide[other], wide[ref], confidence, n_resamples, f"{other} - {ref}"))
        for opt, sub in wide.groupby(level=optimizer):
            per.append(paired_difference(sub[other], sub[ref], confidence, n_resamples, f"{other} - {ref} | {opt}"))
    return InitEffects(ref, tuple(holm(pooled, confidence)), tuple(holm(per, confidence)), "ok")


@dataclass(frozen=True)
class BestSet:
    """The best combination and every one not distinguishable from it (Holm), with counts of dropped runs."""

    best: tuple | None
    members: pd.DataFrame  # one row per combination: group cols, select_mean, report_mean, n_runs, n_dropped, in_set
    comparisons: tuple
    status: str
    n_dropped: int


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
    """Select on select_metric (validation), report report_metric (test): "best" is a set, not an argmax.

    Paired on `paired_on` when at least two keys are shared, else an independent test. Runs with a non-finite
    select_metric (diverged) are dropped and counted. A member is excluded only when Holm says it is worse.
    """
    group_cols, paired_on = list(group_cols), list(paired_on)
    sel = pd.to_numeric(frame[select_metric], errors="coerce").to_numpy(dtype=float)
    rep = pd.to_numeric(frame[report_metric], errors="coerce").to_numpy(dtype=float)
    data = frame[group_cols + paired_on].assign(_sel=sel, _rep=rep, _ok=np.isfinite(sel))
    data["_g"] = data.groupby(group_cols, dropna=False, sort=True).ngroup()
    rows, groups = [], []
    for g, sub in data.groupby("_g"):
        good = sub[sub["_ok"]]
        groups.append(g)
        rows.append(
            {
                **{c: sub[c].iloc[0] for c in group_cols},
                "select_mean": good["_sel"].mean(),
                "report_mean": good["_rep"].mean(),
                "n_runs": len(sub),
                "n_dropped": int((~sub["_ok"]).sum()),
            }
        )
    members = pd.DataFrame(
        rows, index=groups, columns=group_cols + ["select_mean", "report_mean", "n_runs", "n_dropped"]
    )
    members["in_set"] = False
    n_dropped = int(members["n_dropped"].sum())
    valid = members.index[members["n_runs"] > members["n_dropped"]]
    if len(valid) == 0:
        return BestSet(None, members, (), f"untestable: no combination has a finite {select_metric}", n_dropped)
    order = members.loc[valid, "select_mean"].sort_values(ascending=not higher_is_better, kind="stable")
    best = order.index[0]

    def runs(g):  # per-key means: duplicate runs of one key must not count as extra pairs
        sub = data[(data["_g"] == g) & data["_ok"]]
        return sub.groupby(paired_on)["_sel"].mean()

    def name(g):
        return "/".join(str(members.at[g, c]) for c in group_cols)

    ref, comps = runs(best), []
    for g in order.index[1:]:
        other = runs(g)
        common = ref.index.intersection(other.index)
        label = f"{name(g)} - {name(best)}"
        if len(common) >= 2:
            comps.append(paired_difference(other.loc[common], ref.loc[common], confidence, n_resamples, label))
        else:
            comps.append(independent_difference(other, ref, confidence, n_resamples, label))
    comps = holm(comps, confidence)
    sign = 1.0 if higher_is_better else -1.0
    worse = {g for g, c in zip(order.index[1:], comps) if c.verdict == "different" and sign * c.estimate < 0}
    members.loc[[g for g in order.index if g not in worse], "in_set"] = True
    if not comps:
        status = "one combination: the set has one member"
    elif all(c.verdict == "untestable" for c in comps):
        status = f"untestable: {comps[0].reason}; no combination can be excluded"
    elif all(c.verdict == "untestable" or "cannot reach" in c.reason for c in comps):
        status = f"no combination can be excluded: {next(c.reason for c in comps if c.reason)}"
    else:
        status = "ok"
    return BestSet(tuple(members.loc[best, group_cols]), members, tuple(comps), status, n_dropped)


def _fmt_p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"= {p:.2g}"


def describe(
    comparison: Comparison, unit: str = "pp", scale: float = 100.0, mde: float | None = None, digits: int = 2
) -> str:
    """The one short phrase every report section uses, e.g. "+0.52 pp [0.21, 0.83], p = 0.004 (Holm 0.008): different"."""
    c, u = comparison, f" {unit}" if unit else ""

    def num(x, sign=""):
        return f"{x * scale:{sign}.{digits}f}"

    if c.verdict == "untestable":
        head = f"{num(c.estimate, '+')}{u}, " if math.isfinite(c.estimate) else ""
        return f"{head}untestable: {c.reason}"
    p_adj = c.p_adjusted if c.p_adjusted is not None else c.p_value
    text = (
        f"{num(c.estimate, '+')}{u} [{num(c.ci_low)}, {num(c.ci_high)}], p {_fmt_p(c.p_value)} "
        f"(Holm {_fmt_p(p_adj).lstrip('= ')}): {c.verdict}"
    )
    if c.verdict == "not detected" and mde is not None:
        text += " (too few pairs to detect any effect)" if math.isinf(mde) else f" (MDE {num(mde)}{u})"
    return f"{text}; {c.reason}" if c.reason else text


def decision_rule_text(confidence: float = 0.95) -> str:
    """The one sentence the report's Methods quote: the real alpha and the single decision rule."""
    alpha, level = alpha_of(confidence), f"{round(confidence * 100, 10):g}%"
    return (
        f"Every comparison uses one rule at alpha = {alpha:g} ({level} confidence): init differences are "
        f"paired on (optimizer, seed) and tested with exact sign-flip permutation tests (unpaired groups with "
        f"permutation tests on the difference of means), p-values are Holm-corrected within each family, a "
        f'difference is called "different" only when its Holm-adjusted p < {alpha:g} and otherwise "not '
        f'detected" (not evidence of equality), intervals are {level} bootstrap CIs (BCa, percentile '
        f'when BCa is undefined), and comparisons with fewer than two seeds are "untestable".'
    )
