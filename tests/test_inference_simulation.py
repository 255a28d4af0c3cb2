"""Simulated studies: the report's tests keep their promises when a seed's runs are correlated.

Each simulation generates thousands of null studies at once (no init, optimizer or interaction effect) in which
one seed's init differences are correlated across optimizers with correlation rho (0, 0.3, 0.6), as the real
default study's are, and runs the vectorised cores the report calls (signflip, maxstat, stats.holm_adjusted).
The family-wise error rate must stay at or below alpha plus two Monte Carlo standard errors. The power test
checks the MDE the report states. Fixed RNG seeds: the same numbers every run.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.power import TTestPower

from fmnist_initopt import best, levels, maxstat, power, signflip, stats

ALPHA = 0.05
STUDIES = 2000
SEEDS = 8  # the default study's seed count
RESAMPLES = 999  # per simulated study; the test is exact at any count ((1 + hits) / (1 + B))
RHOS = (0.0, 0.3, 0.6)


def mc_se(rate: float, studies: int) -> float:
    return math.sqrt(rate * (1 - rate) / studies)


def null_runs(rng, studies, seeds=SEEDS, inits=2, optimizers=3, rho=0.3, shape=()):
    """Null values (studies, *shape, seeds, inits, optimizers). A seed shifts all its runs; with weight rho its
    init draw is shared by every optimizer and its optimizer draw by every init, so the init difference of a
    seed has correlation rho between two optimizers (and the optimizer difference between two inits)."""
    size = (studies, *shape, seeds)
    seed_shift = rng.standard_normal((*size, 1, 1))
    init_draw = rng.standard_normal((*size, inits, 1))
    optimizer_draw = rng.standard_normal((*size, 1, optimizers))
    noise = rng.standard_normal((*size, inits, optimizers))
    return seed_shift + math.sqrt(rho) * (init_draw + optimizer_draw) + math.sqrt(1 - rho) * noise


def assert_fwer(rejections, label):
    rate = float(np.mean(rejections))
    bound = ALPHA + 2 * mc_se(ALPHA, len(rejections))
    assert rate <= bound, f"{label}: family-wise error {rate:.4f} > {bound:.4f}"
    return rate


@pytest.mark.parametrize("rho", RHOS)
def test_null_studies_keep_the_family_wise_error(rho):
    rng = np.random.default_rng(int(rho * 10) + 1)
    runs = null_runs(rng, STUDIES, rho=rho)  # (studies, seeds, 2 inits, 3 optimizers)
    # The init answer: each seed's Xavier - He difference averaged over the optimizers, sign-flipped over seeds.
    init = signflip.sign_flip((runs[:, :, 1] - runs[:, :, 0]).mean(axis=-1), ALPHA, with_interval=False)
    # The optimizer answer: each seed's optimizer means over the inits, max-statistic within seeds.
    optimizer = maxstat.max_statistic(runs.mean(axis=2), None, ALPHA, n_resamples=RESAMPLES)
    # The best set: all six combinations, inits and optimizers relabelled separately within each seed.
    combos = maxstat.max_statistic(runs.reshape(STUDIES, SEEDS, 6), (2, 3), ALPHA, n_resamples=RESAMPLES)
    rates = {
        "init answer": assert_fwer(init.p <= ALPHA, "init answer"),
        "optimizer answer": assert_fwer((optimizer.p <= ALPHA).any(axis=-1), "optimizer answer"),
        "best set": assert_fwer((combos.p <= ALPHA).any(axis=-1), "best set"),
    }
    # The interval of the exact test says "different" exactly when p does.
    flips = signflip.sign_flip((runs[:200, :, 1] - runs[:200, :, 0]).mean(axis=-1), ALPHA)
    assert ((flips.p <= ALPHA) == ((flips.ci_low > 0) | (flips.ci_high < 0))).all()
    print(
        f"rho {rho}: " + ", ".join(f"{k} {v:.4f}" for k, v in rates.items()) + f" (MC SE {mc_se(ALPHA, STUDIES):.4f})"
    )


@pytest.mark.parametrize("rho", RHOS)
def test_the_depth_family_keeps_the_family_wise_error(rho):
    """Per (depth, optimizer) init comparisons, one Holm family (levels.compare_within); and pooled per depth.
    10 seeds: with 8, Holm over 9 comparisons can never reject (2 / 2**8 > 0.05 / 9), which the last line pins."""
    rng = np.random.default_rng(int(rho * 10) + 11)
    depths, seeds = 3, 10
    # A seed's runs at different depths share half their seed draws (same data order, other weights).
    shared = null_runs(rng, STUDIES, seeds=seeds, rho=rho)[:, None]
    runs = math.sqrt(0.5) * (null_runs(rng, STUDIES, seeds=seeds, rho=rho, shape=(depths,)) + shared)
    d = np.moveaxis(runs[..., 1, :] - runs[..., 0, :], -1, -2)  # (studies, depths, optimizers, seeds)
    per_cell = signflip.sign_flip(d, ALPHA, with_interval=False).p.reshape(STUDIES, -1)
    per_depth = signflip.sign_flip(d.mean(axis=-2), ALPHA, with_interval=False).p
    cell_rate = assert_fwer((stats.holm_adjusted(per_cell) <= ALPHA).any(axis=-1), "depth x optimizer family")
    depth_rate = assert_fwer((stats.holm_adjusted(per_depth) <= ALPHA).any(axis=-1), "per-depth family")
    assert cell_rate > 0  # the family can reject at all: the bound above is not met trivially
    assert signflip.smallest_p(8) * 9 > ALPHA
    print(f"rho {rho}: depth x optimizer {cell_rate:.4f}, per depth {depth_rate:.4f}")


@pytest.mark.parametrize("effect", [0.0, 3.0], ids=["null", "one scope with a real effect"])
def test_a_family_of_scopes_with_three_levels_keeps_the_family_wise_error(effect):
    """The per-optimizer answer with three inits (levels.compare_within): a max-statistic test per optimizer
    (nothing added within it) and Holm across the optimizers (levels.holm_over_scopes). Null: no init differs
    anywhere. With a real effect: under the first optimizer one init is worse by `effect` sd, which that scope's
    test rejects nearly always, so a procedure that let such a scope leave the family early would show here.
    A false rejection: any init called worse than the best where it is truly as good."""
    rng = np.random.default_rng(int(effect) + 21)
    scopes, inits, studies = 3, 3, STUDIES
    runs = null_runs(rng, studies, seeds=SEEDS, inits=inits, optimizers=scopes, rho=0.3)  # (.., seeds, inits, opt)
    truth = np.zeros((scopes, inits))
    truth[0, 2] = -effect
    values = np.moveaxis(runs, -1, 1) + truth[None, :, None, :]  # (studies, scopes, seeds, inits)
    found = maxstat.max_statistic(values, None, ALPHA, n_resamples=RESAMPLES)
    false = np.zeros(studies, dtype=bool)
    for i in range(studies):
        p = [
            {level: float(found.p[i, j, level]) for level in range(inits) if level != found.best[i, j]}
            for j in range(scopes)
        ]
        _, adjusted = levels.holm_over_scopes(p, ALPHA)
        false[i] = any(
            q <= ALPHA and truth[j, level] == truth[j].max() for j in range(scopes) for level, q in adjusted[j].items()
        )
    rate = assert_fwer(false, f"three inits per optimizer, effect {effect}")
    if effect:
        assert (found.p[:, 0, 2] <= ALPHA / scopes).mean() > 0.9  # the real effect is found: the case is exercised
    print(f"effect {effect}: family-wise error {rate:.4f}")


def test_levels_too_many_for_a_table_of_relabellings_keep_the_family_wise_error():
    """Nine levels (9! relabellings of a seed, more than maxstat.MAX_GROUP): drawn factor by factor instead of
    from the table, with the same null distribution."""
    assert maxstat.group_size((9,)) > maxstat.MAX_GROUP
    studies = 1000
    rng = np.random.default_rng(31)
    values = rng.standard_normal((studies, SEEDS, 9)) + rng.standard_normal((studies, SEEDS, 1))  # seed shifts
    found = maxstat.max_statistic(values, None, ALPHA, n_resamples=RESAMPLES)
    rate = assert_fwer((found.p <= ALPHA).any(axis=-1), "nine levels")
    assert rate > 0  # the test can reject at all


def test_the_simulation_detects_the_error_of_counting_pairs_as_units():
    """Guard on the simulation itself: treating (optimizer, seed) pairs as units (the issue's 3 x 4 design)
    exceeds alpha at rho = 0.6, where the seed-level test above does not."""
    runs = null_runs(np.random.default_rng(7), STUDIES, seeds=4, rho=0.6)
    pairs = (runs[:, :, 1] - runs[:, :, 0]).reshape(STUDIES, -1)  # 12 pairs per study
    rate = float(np.mean(signflip.sign_flip(pairs, ALPHA, with_interval=False).p <= ALPHA))
    assert rate > ALPHA + 3 * mc_se(ALPHA, STUDIES), rate


def _frame(values: np.ndarray) -> pd.DataFrame:
    seeds, inits, optimizers = values.shape
    index = pd.MultiIndex.from_product(
        [range(seeds), ["he", "xavier"][:inits], ["adam", "sgd", "rmsprop"][:optimizers]]
    )
    return pd.DataFrame({"acc": values.ravel()}, index=index.set_names(["seed", "init", "optimizer"])).reset_index()


def test_the_reports_functions_decide_as_the_simulated_cores():
    """The frame-level functions the findings call give the p-values of the cores simulated above."""
    runs = null_runs(np.random.default_rng(3), 4, rho=0.3)
    runs[0, :, 1, :] += 1.5  # one study with a real init effect, so both verdicts occur
    for values in runs:
        frame = _frame(values)
        init = levels.compare_levels(frame, "acc", "init", over=("optimizer",), reference="he")
        core = signflip.sign_flip((values[:, 1] - values[:, 0]).mean(axis=-1), ALPHA)
        (c,) = init.comparisons
        assert (c.p, c.ci_low, c.ci_high) == pytest.approx((float(core.p), float(core.ci_low), float(core.ci_high)))
        optimizer = levels.compare_levels(frame, "acc", "optimizer", over=("init",), n_resamples=RESAMPLES)
        core = maxstat.max_statistic(values.mean(axis=1), None, ALPHA, n_resamples=RESAMPLES)
        order = ["adam", "sgd", "rmsprop"]
        assert {c.level: c.p for c in optimizer.comparisons} == pytest.approx(
            {o: float(p) for o, p in zip(order, core.p) if o != order[int(core.best)]}
        )
        found = best.best_set(
            frame.assign(val=frame["acc"]), "val", "acc", ["init", "optimizer"], n_resamples=RESAMPLES
        )
        core = maxstat.max_statistic(values.reshape(SEEDS, 6), (2, 3), ALPHA, n_resamples=RESAMPLES)
        assert found.smallest_excludable_gap == pytest.approx(float(core.critical))
        assert sorted(c.p for c in found.comparisons) == pytest.approx(sorted(np.delete(core.p, int(core.best))))
        family = levels.compare_within(frame, "acc", "init", ("optimizer",), reference="he")
        core = signflip.sign_flip(np.moveaxis(values[:, 1] - values[:, 0], 0, -1), ALPHA).p
        assert [lc.comparisons[0].p_adjusted for lc in family] == pytest.approx(list(stats.holm_adjusted(core)))


# ---------------------------------------------------------------- power at the reported MDE


@pytest.mark.parametrize(("seeds", "alpha"), [(6, 0.05), (7, 0.05), (8, 0.05), (7, 0.025), (8, 0.0125)])
def test_the_reported_mde_has_its_power(seeds, alpha):
    mde = power.minimum_detectable_effect(1.0, seeds, alpha)
    assert mde.value is not None and mde.unit == "seed" and "sign-flip" in mde.method
    studies = 4000
    shifted = np.random.default_rng(seeds * 100 + int(1 / alpha)).standard_normal((studies, seeds)) + mde.value
    achieved = float(np.mean(signflip.sign_flip(shifted, alpha, with_interval=False).p <= alpha))
    assert achieved >= mde.power - 2 * mc_se(mde.power, studies), (seeds, alpha, achieved)
    t_mde = TTestPower().solve_power(effect_size=None, nobs=seeds, alpha=alpha, power=0.8)
    assert mde.value > t_mde  # few seeds: the exact test needs more than the t-test promises
    print(f"{seeds} seeds, alpha {alpha}: MDE {mde.value:.3f} sd, simulated power {achieved:.3f} (t MDE {t_mde:.3f})")


def test_the_t_approximation_above_13_seeds_has_its_power():
    """Above 13 seeds the test is Monte Carlo and the MDE is the t-test's, labelled: its power is still 0.8."""
    mde = power.minimum_detectable_effect(1.0, 14, ALPHA)
    assert mde.method.startswith("t approximation")
    studies = 2000
    shifted = np.random.default_rng(14).standard_normal((studies, 14)) + mde.value
    achieved = float(np.mean(signflip.sign_flip(shifted, ALPHA, with_interval=False).p <= ALPHA))
    assert achieved >= 0.8 - 2 * mc_se(0.8, studies)


def test_too_few_seeds_have_no_mde_and_say_why():
    five = power.minimum_detectable_effect(1.0, 5, 0.05)  # 2 / 32 > 0.05
    assert five.value is None and not five.reachable and "smallest possible p" in five.reason
    assert power.minimum_detectable_effect(0.0, 8, 0.05).value is None
    needed = power.seeds_for_mde(1.0, 1.2, 0.05)
    assert needed.units is not None and needed.mde.value <= 1.2
    assert power.minimum_detectable_effect(1.0, needed.units - 1, 0.05).value > 1.2


# ---------------------------------------------------------------- exactness against references


@pytest.mark.parametrize("n", range(2, 11))
def test_sign_flip_p_equals_scipy_and_brute_force(n):
    rng = np.random.default_rng(n)
    for _ in range(5):
        d = rng.normal(0.4, 1.0, n)
        reference = sps.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=10**6).pvalue
        assert float(signflip.sign_flip(d).p) == pytest.approx(min(1.0, reference), abs=1e-12)
        ties = rng.integers(-2, 3, n).astype(float)  # integer differences: ties everywhere
        signs = np.array(list(itertools.product([-1, 1], repeat=n)))
        brute = np.mean(np.abs(signs @ ties) >= abs(ties.sum()) - 1e-9)
        assert float(signflip.sign_flip(ties).p) == pytest.approx(brute, abs=1e-12)


def test_sign_flip_interval_is_the_set_of_shifts_the_test_keeps():
    d = np.array([0.3, -0.1, 0.8, 0.5, 0.2, 0.6, -0.2, 0.4])
    result = signflip.sign_flip(d, ALPHA)
    for shift in np.linspace(result.ci_low - 0.3, result.ci_high + 0.3, 61):
        kept = float(signflip.sign_flip(d - shift).p) > ALPHA
        assert kept == (result.ci_low <= shift <= result.ci_high), shift


def test_max_statistic_equals_brute_force_enumeration():
    rng = np.random.default_rng(5)
    values = rng.normal(size=(3, 3)) + np.array([0.0, 0.5, 2.0])  # 3 seeds x 3 levels: 6**3 relabellings
    result = maxstat.max_statistic(values, None, ALPHA)
    assert result.exact
    means = values.mean(axis=0)
    ranges = []
    for perms in itertools.product(itertools.permutations(range(3)), repeat=3):
        m = np.mean([values[s, list(p)] for s, p in enumerate(perms)], axis=0)
        ranges.append(m.max() - m.min())
    gaps = means.max() - means
    expected = [np.mean(np.array(ranges) >= g - 1e-12) for g in gaps]
    expected[int(np.argmax(means))] = 1.0
    assert result.p == pytest.approx(expected)


# ---------------------------------------------------------------- no overflow, any size


def test_thousands_of_units_analyse_in_seconds():
    rng = np.random.default_rng(0)
    assert 0 < float(signflip.sign_flip(rng.normal(0.01, 1, 10_000)).p) <= 1
    pairs = stats.paired_difference(rng.normal(0.1, 1, 1024), rng.normal(0, 1, 1024))
    assert pairs.verdict in stats.VERDICTS and math.isfinite(pairs.ci_low)
    assert power.minimum_detectable_effect(1.0, 1024, ALPHA).value == pytest.approx(0.0876, abs=0.001)
    assert power.minimum_detectable_effect(1.0, 10_000, ALPHA).value > 0
    assert power.seeds_for_mde(1.0, 0.05, ALPHA, max_units=5000).units > 3000
    # 5,004 runs: 834 seeds x 2 inits x 3 optimizers, analysed by every frame-level function.
    values = rng.normal(size=(834, 2, 3)) * 0.01 + 0.9
    frame = _frame(values).assign(val=lambda f: f["acc"])
    assert levels.compare_levels(frame, "acc", "init", over=("optimizer",)).n_units == 834
    assert levels.compare_levels(frame, "acc", "optimizer", over=("init",)).status == "ok"
    assert best.best_set(frame, "val", "acc", ["init", "optimizer"]).n_units == 834
    assert len(levels.compare_within(frame, "acc", "init", ("optimizer",))) == 3
