"""The exact sign-flip test of a mean difference over units (seeds), and the interval that inverts it.

Vectorised over leading axes: `differences` has shape (..., n_units), so one call tests one study or thousands of
simulated ones, and the report and the simulation tests run the same code.

How the interval inverts the test (so that "0 outside the interval" and "p <= alpha" are the same event): write
each difference as d_i = m + e_i (m their mean). Testing a shift delta = m + t, a sign vector s counts as at
least as extreme as the data when |sum s_i (e_i - t)| >= n |t|. With A = sum s_i e_i and b = sum s_i this holds
exactly on the closed interval between A / (n + b) and -A / (n - b), which always contains t = 0 (the vectors
+1 and -1 hold everywhere). So p(delta) counts the sign vectors whose interval contains t, the p-value of
"no difference" is p at t = -m, and the set of shifts the test keeps, {delta: p(delta) > alpha}, is an interval
found from order statistics of the interval ends: no root finding, and the same numbers decide both.

Up to `exact_units(n_resamples)` units (13 for 9,999) all 2**n sign vectors are enumerated; above, `n_resamples`
random sign vectors from a fixed seed (plus the observed one, the usual (1 + count) / (1 + B) p-value). Counts
stay integers and no 2**n is ever formed as a float, so any number of units works.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

N_RESAMPLES = 9999  # random sign vectors when the units are too many to enumerate (2**13 <= 9999 < 2**14)
SEED = 0  # fixed resampling seed: the same results give the same report, run after run
TIE = 1e-12  # relative tolerance: a permuted statistic within float noise of the observed one counts as a tie
_CHUNK = 1 << 21  # elements per working array: bounds memory for thousands of studies or of units


def exact_units(n_resamples: int = N_RESAMPLES) -> int:
    """The largest number of units whose 2**n sign vectors are enumerated (an exact test)."""
    return max(int(n_resamples).bit_length() - 1, 0)


def smallest_p(n_units: int, n_resamples: int = N_RESAMPLES) -> float:
    """The smallest p-value the test can return with n units: 2 / 2**n exact, 1 / (1 + B) by Monte Carlo."""
    if n_units < 1:
        return 1.0
    if n_units <= exact_units(n_resamples):
        return math.ldexp(1.0, 1 - n_units)  # 2 / 2**n without forming 2**n
    return 1.0 / (n_resamples + 1)


@functools.lru_cache(maxsize=16)
def _half_signs(n: int) -> np.ndarray:
    # s and -s give the same interval, so half of the 2**n vectors (first sign +1), each counted twice.
    signs = ((np.arange(1 << (n - 1))[:, None] >> np.arange(n - 1)) & 1).astype(np.float64) * 2.0 - 1.0
    signs = np.hstack([np.ones((len(signs), 1)), signs])
    signs.setflags(write=False)
    return signs


def sign_vectors(n: int, n_resamples: int = N_RESAMPLES, seed: int = SEED):
    """Chunks of sign vectors (rows of +-1) with the weight each row stands for: all 2**n when
    n <= exact_units (half of them, weight 2, since s and -s are equally extreme), else n_resamples random ones
    (weight 1). Yields (float64 array of shape (rows, n), weight); the random ones come from `seed` in a fixed
    order, so every call (and every study in a batch) uses the same vectors."""
    if n <= exact_units(n_resamples):
        yield _half_signs(n), 2
        return
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK // max(n, 1))
    for start in range(0, n_resamples, rows):
        count = min(rows, n_resamples - start)
        bits = np.unpackbits(np.frombuffer(rng.bytes((count * n + 7) // 8), dtype=np.uint8))[: count * n]
        yield bits.reshape(count, n).astype(np.float64) * 2.0 - 1.0, 1


@dataclass(frozen=True)
class SignFlip:
    """Sign-flip results for a batch of studies (arrays shaped like the leading axes of the input)."""

    estimate: np.ndarray  # mean difference over the units
    p: np.ndarray  # two-sided p of "mean difference 0"
    ci_low: np.ndarray  # the shifts the test keeps at alpha: [ci_low, ci_high] (closed; +-inf if none rejected)
    ci_high: np.ndarray
    spread: np.ndarray  # sd of the unit-level differences (NaN with one unit)
    n_units: int
    exact: bool  # all 2**n sign vectors enumerated
    n_sign_vectors: int  # 2**n, or the random ones plus the observed one


def _interval_ends(e: np.ndarray, signs: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per study and sign vector, the closed interval of t over which the vector is at least as extreme."""
    a = e @ signs.T  # (..., rows)
    b = signs.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        plus, minus = a / (n + b), -a / (n - b)
    whole = (n + b == 0) | (n - b == 0)  # the vectors +1 and -1: extreme at every t
    low = np.where(whole, -np.inf, np.minimum(plus, minus))
    high = np.where(whole, np.inf, np.maximum(plus, minus))
    return low, high


def _needed(alpha: np.ndarray, total: int, observed: int) -> np.ndarray:
    """How many counted sign vectors keep p = (observed + count) / total above alpha: the smallest integer K
    with K / total > alpha (evaluated exactly as the verdict compares p with alpha), minus `observed`."""
    k = np.floor(alpha * total).astype(np.int64)
    k = np.where(k / total > alpha, k, k + 1)
    k = np.where((k - 1) / total > alpha, k - 1, k)
    return k - observed


def _kth(values: np.ndarray, k: np.ndarray, largest: bool) -> np.ndarray:
    """The k-th largest (or smallest) of `values` along the last axis, per study; inf (or -inf) for k < 1."""
    size = values.shape[-1]
    k = np.broadcast_to(k, values.shape[:-1])
    safe = np.clip(k, 1, size)
    index = (size - safe) if largest else (safe - 1)
    if index.size and (index == index.flat[0]).all():  # one alpha for the batch: a partition, not a sort
        picked = np.partition(values, int(index.flat[0]), axis=-1)[..., int(index.flat[0])]
    else:
        picked = np.take_along_axis(np.sort(values, axis=-1), index[..., None], axis=-1)[..., 0]
    return np.where(k < 1, np.inf if largest else -np.inf, picked)


def sign_flip(
    differences, alpha=0.05, n_resamples: int = N_RESAMPLES, seed: int = SEED, with_interval: bool = True
) -> SignFlip:
    """Exact (or fixed-seed Monte Carlo) two-sided sign-flip test of mean 0 over the last axis, and its interval.

    `differences`: (..., n_units), finite. `alpha` (scalar or broadcastable to the leading axes) sets the
    interval's level 1 - alpha; the p-value does not depend on it. The interval is exactly the set of shifts
    the test does not reject at alpha, so 0 lies outside it iff p <= alpha. With too few units to reach
    p <= alpha (smallest_p > alpha) the interval is (-inf, inf).
    """
    d = np.asarray(differences, dtype=np.float64)
    if d.ndim == 0 or d.shape[-1] < 1:
        raise ValueError("sign_flip needs at least one unit on the last axis")
    if not np.isfinite(d).all():
        raise ValueError("sign_flip needs finite differences; drop incomplete units first")
    n, lead = d.shape[-1], d.shape[:-1]
    d2 = d.reshape(-1, n)
    alpha2 = np.broadcast_to(np.asarray(alpha, dtype=np.float64), lead).reshape(-1)
    exact = n <= exact_units(n_resamples)
    total, observed = (1 << n, 0) if exact else (n_resamples + 1, 1)
    mean = d2.mean(axis=1)
    tol = TIE * n * np.abs(d2).max(axis=1)
    p = np.empty(len(d2))
    low, high = np.full(len(d2), np.nan), np.full(len(d2), np.nan)
    study_rows = max(1, _CHUNK // min(total, _CHUNK))
    for start in range(0, len(d2), study_rows):
        rows = slice(start, start + study_rows)
        e = d2[rows] - mean[rows, None]
        ends = [(*_interval_ends(e, signs, n), weight) for signs, weight in sign_vectors(n, n_resamples, seed)]
        weight = ends[0][2]
        lo = np.concatenate([x for x, _, _ in ends], axis=1) - tol[rows, None]
        hi = np.concatenate([x for _, x, _ in ends], axis=1) + tol[rows, None]
        t0 = -mean[rows, None]
        p[rows] = (observed + weight * ((lo <= t0) & (t0 <= hi)).sum(axis=1)) / total
        if with_interval:  # the K-th of the counted vectors is the ceil(K / weight)-th of the rows
            need = -(-_needed(alpha2[rows], total, observed) // weight)
            low[rows] = mean[rows] + _kth(lo, need, largest=False)
            high[rows] = mean[rows] + _kth(hi, need, largest=True)
    spread = d2.std(axis=1, ddof=1) if n > 1 else np.full(len(d2), np.nan)
    return SignFlip(
        mean.reshape(lead),
        np.minimum(p, 1.0).reshape(lead),
        low.reshape(lead),
        high.reshape(lead),
        spread.reshape(lead),
        n,
        exact,
        total,
    )
