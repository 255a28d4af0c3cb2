"""The minimum detectable effect (MDE) of the test the report uses, and the seeds a target MDE needs.

The test is the sign-flip test over seeds (signflip.py), which with few seeds has less power than a t-test: at
the t-test's MDE its power is about 0.6, not 0.8. So the MDE here is the power of that test itself, found by
simulating normal seed-level differences (fixed seed) and using the interval the test inverts to: a simulated
study rejects a true shift delta exactly when delta lies outside its interval shifted by delta, so the power
curve of every shift comes from one batch of intervals, and the MDE is read off it (no root finding, no noise
between shifts). Up to 13 units, where the test enumerates all its sign vectors, the simulation uses exactly
those; beyond, the test is a Monte Carlo one whose null distribution is close to normal, and the noncentral
t-test's MDE is used instead, labelled so in the record's `method` (tests/test_inference_simulation.py checks
that the Monte Carlo test's power at that MDE is 0.8 there). Results depend on (units, alpha, power) only, in
units of the seed-level sd, and are cached: the largest simulation (13 units) takes a few seconds.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from statsmodels.stats.power import TTestPower

from fmnist_initopt.signflip import exact_units, sign_flip, smallest_p

POWER = 0.8
SIMULATED_STUDIES = 10_000  # the simulated power's Monte Carlo SE at 0.8: 0.004
MARGIN = 1.5  # Monte Carlo SEs the simulated power must exceed the target by, so the true power is not below it
POWER_SEED = 20240518  # not the test's resampling seed: the studies must not be the sign vectors' stream


@dataclass(frozen=True)
class DetectableEffect:
    """The smallest true mean difference the test detects with `power` at `alpha` over n_units units.

    `value` is in the response's units (in_sd x sd); None with `reason` when it cannot be given: `reachable`
    False means no p <= alpha is possible with so few units (no effect, however large, is detectable)."""

    value: float | None
    in_sd: float | None  # in units of the sd of the unit-level differences
    sd: float
    power: float
    alpha: float
    n_units: int
    unit: str
    method: str
    reason: str = ""
    reachable: bool = True


@functools.lru_cache(maxsize=512)
def mde_in_sd(n_units: int, alpha: float, power: float = POWER) -> tuple[float | None, str]:
    """(MDE in units of the seed-level sd, method) of the two-sided sign-flip test; (None, why) if unreachable."""
    if n_units < 2 or smallest_p(n_units) > alpha:
        return None, f"{n_units} units cannot reach p <= {alpha:.3g} (smallest possible p {smallest_p(n_units):.2g})"
    if n_units > exact_units():
        effect = TTestPower().solve_power(effect_size=None, nobs=n_units, alpha=alpha, power=power)
        return abs(float(np.squeeze(effect))), (
            f"t approximation (noncentral t, {n_units} units: the sign-flip test's null distribution is close to "
            "normal there)"
        )
    studies = np.random.default_rng(POWER_SEED).standard_normal((SIMULATED_STUDIES, n_units))
    flips = sign_flip(studies, alpha)
    # A shift delta > 0 is rejected when delta > -ci_low (interval above 0) or delta < -ci_high (below 0).
    upper, lower = np.sort(-flips.ci_low), np.sort(-flips.ci_high)
    candidates = np.nextafter(upper[upper >= 0], np.inf)
    hits = np.searchsorted(upper, candidates, side="left") + (len(lower) - np.searchsorted(lower, candidates, "right"))
    needed = power + MARGIN * math.sqrt(power * (1 - power) / SIMULATED_STUDIES)
    enough = np.flatnonzero(hits >= needed * SIMULATED_STUDIES)
    method = f"simulated power of the exact sign-flip test ({SIMULATED_STUDIES} normal studies, at least {needed:.3f})"
    return (float(candidates[enough[0]]), method) if len(enough) else (None, "power not reached in the simulation")


def minimum_detectable_effect(
    sd: float | None, n_units: int, alpha: float, power: float = POWER, unit: str = "seed"
) -> DetectableEffect:
    """MDE of the sign-flip test over n_units units whose differences have standard deviation `sd`."""
    n_units = int(n_units or 0)
    record = functools.partial(DetectableEffect, sd=sd, power=power, alpha=alpha, n_units=n_units, unit=unit)
    if n_units < 2:
        return record(None, None, method="", reason=f"fewer than two {unit}s: no {unit}-to-{unit} noise")
    if sd is None or not math.isfinite(sd) or sd <= 0:
        return record(None, None, method="", reason=f"the {unit}-level differences do not vary (sd {sd})")
    in_sd, method = mde_in_sd(n_units, float(alpha), float(power))
    if in_sd is None:
        reachable = smallest_p(n_units) <= alpha
        return record(None, None, method="sign-flip test", reason=method, reachable=reachable)
    return record(in_sd * sd, in_sd, method=method)


def mde_of(differences, alpha: float, power: float = POWER, unit: str = "seed") -> DetectableEffect:
    """The MDE from observed unit-level differences (one per seed): their sd and their count; NaN dropped."""
    d = np.asarray(differences, dtype=float).ravel()
    d = d[np.isfinite(d)]
    sd = float(np.std(d, ddof=1)) if d.size >= 2 else math.nan
    return minimum_detectable_effect(sd, d.size, alpha, power, unit)


@dataclass(frozen=True)
class SeedsNeeded:
    """The fewest units whose MDE is at most `target`; None (with `reason`) if not within max_units."""

    units: int | None
    target: float
    mde: DetectableEffect | None  # the MDE at that many units
    reason: str = ""


def seeds_for_mde(
    sd: float | None, target: float, alpha: float, power: float = POWER, max_units: int = 100, unit: str = "seed"
) -> SeedsNeeded:
    """Smallest number of seeds (units) whose sign-flip MDE, at this seed-level sd, is <= target."""
    if target is None or not target > 0:
        return SeedsNeeded(None, target, None, f"no positive target MDE ({target})")
    if sd is None or not math.isfinite(sd) or sd <= 0:
        return SeedsNeeded(None, target, None, f"the {unit}-level differences do not vary (sd {sd})")

    def fits(n):
        found = minimum_detectable_effect(sd, n, alpha, power, unit)
        return found if found.value is not None and found.value <= target else None

    # Start a little below the t-test's count (the sign-flip test needs at least about as many; above 13 units
    # its MDE is the t-test's), then walk. The count is read off the t-test's power curve at every n from 2,
    # where it is defined: no root finder, which fails to converge (and warns) when 2 units already suffice.
    counts = np.arange(2, max(max_units, 2) + 1)
    reached = np.flatnonzero(TTestPower().power(effect_size=target / sd, nobs=counts, alpha=alpha) >= power)
    start = max(2, int(counts[reached[0]]) - 3) if len(reached) else max_units + 1
    while start > 2 and fits(start - 1):
        start -= 1
    for n in range(start, max_units + 1):
        found = fits(n)
        if found:
            return SeedsNeeded(n, target, found)
    return SeedsNeeded(None, target, None, f"more than {max_units} {unit}s would be needed")
