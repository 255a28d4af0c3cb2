"""The max-statistic permutation test within seeds over all levels at once: which level is best, and which
levels can be excluded from "the best", accounting for choosing the best from the same runs (vectorised).

The statistic is the range of the level means over seeds (best mean - worst mean). Under "no level differs",
each seed's values are exchangeable among the levels, so relabelling the levels within every seed (the same
relabelling for all of a seed's runs: the seed stays the unit) draws from the null distribution of the range.
A level is excluded when its gap to the best exceeds the critical range: since any difference between two
levels is at most the range, this controls the chance of excluding any level that is truly as good as the best
(family-wise), however the best was picked. `critical` is therefore the smallest gap the study could exclude,
and the interval of each difference is estimate +- critical (0 outside it exactly when p <= alpha).

Levels that are combinations of factors (init x optimizer) are relabelled factor by factor (a permutation of
the inits and one of the optimizers per seed), which keeps the runs of one seed that share an init, or an
optimizer, together: their correlation survives relabelling. With two levels the test is the sign-flip test
(signflip.py), whose interval inverts it.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import numpy as np

from fmnist_initopt.signflip import _CHUNK, N_RESAMPLES, SEED, TIE, sign_flip


def group_size(sizes) -> int:
    """Relabellings of one seed: the product of the factorials of the factor sizes (a Python int, no overflow)."""
    return math.prod(math.factorial(int(k)) for k in sizes)


def is_exact(n_units: int, sizes, n_resamples: int = N_RESAMPLES) -> bool:
    """Whether all group_size ** n_units relabellings are enumerated (integers only: no overflow at any n)."""
    size = group_size(sizes)
    return size == 1 or (size <= n_resamples and size**n_units <= n_resamples)


def smallest_p(n_units: int, sizes, n_resamples: int = N_RESAMPLES) -> float:
    """The smallest p the test can give: relabelling every seed alike keeps the range, so G**(1 - n) at least."""
    size = group_size(sizes)
    floor = math.exp((1 - n_units) * math.log(size)) if size > 1 else 1.0
    return floor if is_exact(n_units, sizes, n_resamples) else max(floor, 1.0 / (n_resamples + 1))


MAX_GROUP = 40320  # relabellings of one seed kept as a table (8 levels); a larger group is drawn factor by factor


@functools.lru_cache(maxsize=32)
def _group(sizes: tuple) -> np.ndarray:
    """Every relabelling of one seed's cells (flattened grid index -> source cell), identity first."""
    strides = np.cumprod((1, *sizes[:0:-1]))[::-1]
    cells = np.indices(sizes).reshape(len(sizes), -1)  # per factor, each cell's level
    maps = []
    for perms in itertools.product(*(itertools.permutations(range(k)) for k in sizes)):
        maps.append(sum(np.asarray(perm)[cells[f]] * strides[f] for f, perm in enumerate(perms)))
    maps = np.asarray(maps)
    maps.setflags(write=False)
    return maps


def _drawn_maps(rng, sizes: tuple, count: int) -> np.ndarray:
    """`count` uniform relabellings (count, cells) of a group too large for a table: one uniform permutation
    per factor (argsort of uniform floats), composed on the grid."""
    strides = np.cumprod((1, *sizes[:0:-1]))[::-1]
    levels = np.indices(sizes).reshape(len(sizes), -1)
    maps = np.zeros((count, math.prod(sizes)), dtype=np.int64)
    for f, k in enumerate(sizes):
        maps += np.argsort(rng.random((count, k)), axis=-1)[:, levels[f]] * strides[f]
    return maps


def _relabellings(n: int, sizes: tuple, n_resamples: int, seed: int):
    """Blocks (tables, choice) of relabellings: under relabelling b, seed s takes its cells from
    tables[s % len(tables)][choice[b, s]] (tables: (1 or n, rows, cells); choice: (relabellings, n)).

    Exact: every choice of a group element per seed (identity first). Otherwise the identity, then n_resamples
    relabellings from `seed`, each seed's group element drawn uniformly and independently (the null distribution
    of relabelling within seeds) as an index into the group's table: n integers per relabelling instead of a
    permutation per seed and factor. A group too large for a table is drawn factor by factor. Block sizes depend
    on the design only."""
    cells = math.prod(sizes)
    if is_exact(n, sizes, n_resamples):
        group = _group(sizes)
        yield group[None], np.indices((len(group),) * n).reshape(n, -1).T
        return
    size = group_size(sizes)
    rng = np.random.default_rng(seed)
    yield np.arange(cells)[None, None], np.zeros((1, n), dtype=np.int64)
    rows = max(1, _CHUNK // max(n, cells) if size <= MAX_GROUP else _CHUNK // (n * cells))
    for start in range(0, n_resamples, rows):
        count = min(rows, n_resamples - start)
        if size <= MAX_GROUP:
            yield _group(sizes)[None], rng.integers(0, size, (count, n))
        else:  # each (seed, relabelling) gets its own drawn map
            maps = _drawn_maps(rng, sizes, n * count).reshape(n, count, cells)
            yield maps, np.broadcast_to(np.arange(count)[:, None], (count, n))


def range_distribution(values, sizes=None, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> np.ndarray:
    """The range of the level means under every relabelling (the observed one first): (..., relabellings).

    `values`: (..., n_units, cells), finite; `sizes`: the factor sizes whose product is `cells` (default one
    factor). Relabellings are drawn once per design, so every study of a batch sees the same ones. The sums over
    seeds accumulate seed by seed from each seed's relabelled rows, so no (relabellings, seeds, cells) array is
    ever formed."""
    y = np.asarray(values, dtype=float)
    n, cells = y.shape[-2:]
    sizes = tuple(sizes or (cells,))
    if math.prod(sizes) != cells:
        raise ValueError(f"factor sizes {sizes} do not multiply to the {cells} cells")
    lead = y.shape[:-2]
    flat = y.reshape(-1, n, cells)
    out = []
    for tables, choice in _relabellings(n, sizes, n_resamples, seed):
        rows = max(1, _CHUNK // (len(choice) * cells))
        parts = []
        for start in range(0, len(flat), rows):
            studies = flat[start : start + rows]
            sums = np.zeros((len(studies), len(choice), cells))
            for s in range(n):
                relabelled = studies[:, s][:, tables[s % len(tables)]]  # (studies, table rows, cells)
                sums += relabelled.take(choice[:, s], axis=1)
            parts.append(sums.max(axis=-1) - sums.min(axis=-1))
        out.append(np.concatenate(parts, axis=0) / n)
    return np.concatenate(out, axis=-1).reshape(*lead, -1)


def range_p(ranges: np.ndarray, gaps, tolerance) -> np.ndarray:
    """p of each gap (|difference of two level means|): the share of relabellings whose range reaches it."""
    gaps = np.asarray(gaps, dtype=float)
    tolerance = np.asarray(tolerance, dtype=float)
    extra = (None,) * (gaps.ndim - ranges.ndim + 1)
    reach = ranges[(..., *extra, slice(None))] >= (gaps - tolerance[(..., *extra)])[..., None]
    return reach.mean(axis=-1)


def critical_gap(ranges: np.ndarray, alpha, tolerance) -> np.ndarray:
    """The gap above which range_p <= alpha: the (J+1)-th largest range, J the most relabellings p <= alpha
    allows (inf when J = 0: then no gap can be excluded)."""
    total = ranges.shape[-1]
    alpha = np.asarray(alpha, dtype=float)
    allowed = np.floor(alpha * total).astype(np.int64)
    allowed = np.where(allowed / total <= alpha, allowed, allowed - 1)
    allowed = np.where((allowed + 1) / total <= alpha, allowed + 1, allowed)
    ordered = -np.sort(-ranges, axis=-1)
    index = np.broadcast_to(np.clip(allowed, 0, total - 1), ranges.shape[:-1])
    picked = np.take_along_axis(ordered, index[..., None], axis=-1)[..., 0] + tolerance
    return np.where(np.broadcast_to(allowed, picked.shape) < 1, np.inf, picked)


@dataclass(frozen=True)
class MaxStatistic:
    """Per study of a batch: level means, the best, each level's p against it and the critical gap."""

    means: np.ndarray  # (..., cells) means over units
    best: np.ndarray  # (...) index of the best cell
    p: np.ndarray  # (..., cells) p of "this level differs from the best" (1 for the best itself)
    critical: np.ndarray  # (...) a level is excluded exactly when its gap to the best exceeds this
    n_units: int
    exact: bool


def tolerance_of(values) -> np.ndarray:
    y = np.asarray(values, dtype=float)
    return TIE * y.shape[-2] * np.abs(y).max(axis=(-2, -1))


def max_statistic(
    values, sizes=None, alpha=0.05, higher_is_better: bool = True, n_resamples=N_RESAMPLES, seed=SEED
) -> MaxStatistic:
    """The best level of each study and which levels its max-statistic test excludes. `values`:
    (..., n_units, cells); two cells give the exact sign-flip test (critical = distance to the interval's end)."""
    y = np.asarray(values, dtype=float)
    n, cells = y.shape[-2:]
    means = y.mean(axis=-2)
    best = np.argmax(means if higher_is_better else -means, axis=-1)
    gaps = np.abs(np.take_along_axis(means, best[..., None], axis=-1) - means)
    sizes = tuple(sizes or (cells,))
    if cells == 2 and len(sizes) == 1:
        other = 1 - best
        pick = np.take_along_axis  # differences other - best, per unit
        d = pick(y, other[..., None, None], axis=-1)[..., 0] - pick(y, best[..., None, None], axis=-1)[..., 0]
        flips = sign_flip(d, alpha, n_resamples, seed)
        p = np.where(np.arange(2) == best[..., None], 1.0, flips.p[..., None])
        edge = (flips.ci_high - flips.estimate) if higher_is_better else (flips.estimate - flips.ci_low)
        return MaxStatistic(means, best, p, edge, n, flips.exact)
    ranges = range_distribution(y, sizes, n_resamples, seed)
    tolerance = tolerance_of(y)
    p = range_p(ranges, gaps, tolerance)
    p = np.where(np.arange(cells) == best[..., None], 1.0, p)
    critical = critical_gap(ranges, alpha, tolerance)
    return MaxStatistic(means, best, p, critical, n, is_exact(n, sizes, n_resamples))
