"""Tests for fmnist_initopt.stats: the one decision rule every findings.md section uses."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower

from fmnist_initopt import stats

FEW = 999  # fewer resamples keep the property tests fast; exactness still holds up to 9 pairs


# ---------------------------------------------------------------- paired / independent differences


def test_constant_pairs_give_the_exact_permutation_p_never_zero():
    c = stats.paired_difference([1, 1, 1], [2, 2, 2], confidence=0.95)
    assert c.p_value == pytest.approx(0.25, abs=1e-12)  # 2 / 2**3: exact, three pairs
    assert c.p_value > 0
    assert c.verdict == "not detected"
    assert (c.estimate, c.ci_low, c.ci_high) == (-1.0, -1.0, -1.0)  # degenerate CI, not NaN
    assert "smallest possible p is 0.25" in c.reason and "3 pairs" in c.reason


def test_identical_integer_shift_with_six_pairs_is_detected_at_the_exact_floor():
    # Epochs-to-target: every seed 1 epoch faster. Zero variance, yet p is 2/64, not 0.
    c = stats.paired_difference([5] * 6, [6] * 6)
    assert c.p_value == pytest.approx(2 / 64)
    assert c.verdict == "different" and c.reason == ""


def test_zero_differences_give_p_one():
    c = stats.paired_difference([0.9, 0.8, 0.7, 0.6], [0.9, 0.8, 0.7, 0.6])
    assert c.p_value == pytest.approx(1.0) and c.estimate == 0.0 and c.verdict == "not detected"


def _shifted_pairs():
    rng = np.random.default_rng(3)
    base = rng.normal(0.88, 0.004, 8)
    return base + 0.01 + rng.normal(0, 0.002, 8), base


def test_big_consistent_shift_is_different_and_shuffled_data_is_not():
    a, b = _shifted_pairs()
    shifted = stats.paired_difference(a, b)
    assert shifted.verdict == "different" and shifted.n == 8
    assert shifted.p_value == pytest.approx(2 / 2**8)  # every difference positive: the exact floor
    assert shifted.ci_low > 0.005 and shifted.ci_high < 0.015
    # Same values, swapped between the groups in every other pair: the "effect" has no consistent sign any more.
    swap = np.arange(8) % 2 == 0
    shuffled = stats.paired_difference(np.where(swap, b, a), np.where(swap, a, b))
    assert shuffled.verdict == "not detected" and shuffled.p_value > 0.3


def test_independent_groups():
    a, b = _shifted_pairs()
    assert stats.independent_difference(a, b).verdict == "different"
    # Same 16 values re-dealt so each group holds four shifted and four unshifted runs.
    mixed = stats.independent_difference(np.r_[a[::2], b[1::2]], np.r_[a[1::2], b[::2]])
    assert mixed.verdict == "not detected" and mixed.p_value > 0.3
    c = stats.independent_difference([1, 1, 1], [2, 2, 2])
    assert c.p_value == pytest.approx(0.1) and c.n == (3, 3)  # 2 / C(6, 3), exact
    assert "smallest possible p is 0.1" in c.reason
    one = stats.independent_difference([1.0], [2.0, 3.0])
    assert one.verdict == "untestable" and one.p_value is None


def test_fewer_than_two_pairs_is_untestable_and_nan_pairs_are_dropped():
    c = stats.paired_difference([0.9], [0.8])
    assert c.verdict == "untestable" and c.p_value is None and c.p_adjusted is None
    assert "no seed-to-seed noise" in c.reason
    c = stats.paired_difference([0.9, np.nan, 0.7], [0.8, 0.8, np.nan])
    assert c.verdict == "untestable" and "2 incomplete pairs dropped" in c.reason
    with pytest.raises(ValueError):
        stats.paired_difference([1, 2], [1, 2, 3])


def test_alpha_is_one_minus_confidence():
    assert stats.alpha_of(0.95) == 0.05
    assert stats.paired_difference([5] * 6, [6] * 6, confidence=0.99).verdict == "not detected"  # 0.031 > 0.01
    with pytest.raises(ValueError):
        stats.alpha_of(95)


# ---------------------------------------------------------------- Holm


def _comp(p, label):
    return stats.Comparison(label, 0.1, 0.0, 0.2, p, p, 8, "test", "different" if p < 0.05 else "not detected")


def test_holm_matches_statsmodels_and_hand_values_and_keeps_untestables():
    ps = [0.01, 0.04, 0.03, 0.2]
    untestable = stats.Comparison("u", 0.1, math.nan, math.nan, None, None, 1, "test", "untestable", "one seed")
    out = stats.holm([_comp(p, str(i)) for i, p in enumerate(ps)] + [untestable], confidence=0.95)
    adjusted = [c.p_adjusted for c in out[:4]]
    assert adjusted == pytest.approx(list(multipletests(ps, method="holm")[1]))
    assert adjusted == pytest.approx([0.04, 0.09, 0.09, 0.2])  # by hand: 4*.01, max(3*.03, .04), 2*.04 -> .09, .2
    assert [c.verdict for c in out] == ["different", "not detected", "not detected", "not detected", "untestable"]
    assert out[4] == untestable
    assert [c.p_value for c in out[:4]] == ps  # raw p-values untouched


@settings(max_examples=30)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=12))
def test_holm_adjusted_equals_statsmodels(p_values):
    expected = multipletests(p_values, method="holm")[1]
    assert stats.holm_adjusted(p_values) == pytest.approx(list(expected), abs=1e-12)


def test_mean_interval_is_descriptive_and_degenerate_cases_are_explicit():
    low, high = stats.mean_interval([0.80, 0.85, 0.93, np.nan], 0.95)  # the NaN (a diverged run) is ignored
    assert low < np.mean([0.80, 0.85, 0.93]) < high
    assert all(math.isnan(bound) for bound in stats.mean_interval([0.9], 0.95))  # one seed: no interval
    assert stats.mean_interval([0.9, 0.9], 0.95) == (0.9, 0.9)


# ---------------------------------------------------------------- minimum detectable effect


def test_mde_decreases_with_n_and_matches_the_noncentral_t():
    mdes = [stats.minimum_detectable_effect(0.5, n) for n in range(6, 60)]
    assert all(later < earlier for earlier, later in zip(mdes, mdes[1:]))
    direct = TTestPower().solve_power(effect_size=None, nobs=400, alpha=0.05, power=0.8, alternative="two-sided")
    assert stats.minimum_detectable_effect(0.5, 400) == pytest.approx(0.5 * direct, rel=1e-6)
    assert stats.minimum_detectable_effect(0.5, 400) == pytest.approx(2.8 * 0.5 / math.sqrt(400), rel=0.02)


def test_mde_edge_cases():
    assert stats.minimum_detectable_effect(0.5, 1) is None
    assert stats.minimum_detectable_effect(0.0, 10) is None
    assert stats.minimum_detectable_effect(float("nan"), 10) is None
    assert stats.minimum_detectable_effect(0.5, 3) == math.inf  # the exact test's floor 0.25 > 0.05


def test_seeds_for_mde_is_monotone_and_meets_the_target():
    sd, per_seed = 0.004, 3
    counts = [stats.seeds_for_mde(sd, per_seed, target) for target in (0.004, 0.003, 0.002, 0.001)]
    assert all(c is not None for c in counts) and counts == sorted(counts) and counts[0] < counts[-1]
    for target, seeds in zip((0.004, 0.003, 0.002, 0.001), counts):
        assert stats.minimum_detectable_effect(sd, seeds * per_seed) <= target
        if seeds > 1:
            assert stats.minimum_detectable_effect(sd, (seeds - 1) * per_seed) > target
    assert stats.seeds_for_mde(sd, per_seed, 1e-9, max_seeds=10) is None
    assert stats.seeds_for_mde(0.0, per_seed, 0.001) is None


# ---------------------------------------------------------------- factorial ANOVA


def _grid(seed=0, inits=("he", "xavier", "orth"), optimizers=("sgd", "adam"), seeds=5, init_effect=0.02):
    rng = np.random.default_rng(seed)
    seed_shift = rng.normal(0, 0.002, seeds)  # shared data order: a seed moves every init together
    rows = [
        {
            "init": i,
            "optimizer": o,
            "seed": s,
            "acc": 0.85 + init_effect * (i == "he") + 0.01 * (o == "adam") + seed_shift[s] + rng.normal(0, 0.002),
        }
        for i in inits
        for o in optimizers
        for s in range(seeds)
    ]
    return pd.DataFrame(rows)


def test_anova_finds_a_real_init_effect_and_no_interaction():
    result = stats.factorial_anova(_grid(), "acc")
    assert result.testable and result.status == "ok"
    table = result.table.set_index("source")
    assert list(table.index) == ["init", "optimizer", "seed", "init:optimizer", "residual"]
    assert table.at["init", "p"] < 0.01 and table.at["init", "df"] == 2
    assert result.interaction_p > 0.05
    init = result.main_effects["init"].set_index("level")
    assert init["diff_vs_best"].idxmax() == "he" and init.at["xavier", "diff_vs_best"] == pytest.approx(
        -0.02, abs=0.005
    )


def test_anova_handles_unbalanced_and_missing_runs():
    frame = _grid().drop(index=[0, 7, 13])
    frame.loc[frame.index[2], "acc"] = np.nan  # a diverged run
    result = stats.factorial_anova(frame, "acc")
    assert result.testable and result.n_dropped == 1 and result.n_used == len(frame) - 1
    assert result.table.set_index("source").at["init", "p"] < 0.01
    cell_missing = _grid()
    cell_missing = cell_missing[~((cell_missing.init == "he") & (cell_missing.optimizer == "adam"))]
    result = stats.factorial_anova(cell_missing, "acc")
    assert result.testable and "additive model" in result.status and result.interaction_p is None


def test_anova_with_one_init_drops_it_and_says_so():
    frame = _grid()
    result = stats.factorial_anova(frame[frame.init == "he"], "acc")
    assert "init has one level (he)" in result.status
    assert "init" not in set(result.table["source"]) and result.interaction_p is None


def test_anova_with_identical_values_reports_no_variance():
    result = stats.factorial_anova(_grid().assign(acc=0.9), "acc")
    assert not result.testable and "no variance" in result.status and result.table.empty


def test_anova_with_one_seed_is_untestable():
    frame = _grid()
    result = stats.factorial_anova(frame[frame.seed == 0], "acc")
    assert not result.testable and result.status.startswith("untestable") and "one seed" in result.status
    assert result.main_effects["init"].set_index("level")["diff_vs_best"].idxmax() == "he"  # still described


def test_anova_with_exact_fit_does_not_claim_p_zero():
    frame = _grid(init_effect=0.0).assign(acc=lambda f: 10.0 + 2.0 * (f.init == "he") + 1.0 * (f.optimizer == "adam"))
    result = stats.factorial_anova(frame, "acc")
    assert not result.testable and "no run-to-run variation" in result.status


def test_pairwise_init_effects_compares_each_init_with_the_best():
    effects = stats.pairwise_init_effects(_grid(seeds=8), "acc")
    assert effects.reference == "he"
    assert len(effects.pooled) == 2 and len(effects.per_optimizer) == 4
    assert all(c.verdict == "different" and c.estimate < 0 for c in effects.pooled)
    assert all(c.n == 16 for c in effects.pooled) and all(c.n == 8 for c in effects.per_optimizer)
    assert effects.per_optimizer[0].p_adjusted > effects.per_optimizer[0].p_value  # Holm over the whole family
    assert stats.pairwise_init_effects(_grid(inits=("he",)), "acc").pooled == ()


# ---------------------------------------------------------------- best set


def _combos(means, seeds=8, noise=0.001, seed=1):
    rng = np.random.default_rng(seed)
    rows = []
    for (init, opt), mean in means.items():
        for s in range(seeds):
            val = mean + rng.normal(0, noise)
            rows.append({"init": init, "optimizer": opt, "seed": s, "val": val, "test": val - 0.005})
    return pd.DataFrame(rows)


def test_best_set_with_one_clear_winner_and_two_tied_runners_up():
    frame = _combos({("he", "adam"): 0.90, ("xavier", "adam"): 0.88, ("orth", "adam"): 0.88})
    result = stats.best_set(frame, "val", "test", ["init", "optimizer"])
    assert result.best == ("he", "adam")
    members = result.members.set_index(["init", "optimizer"])
    assert members["in_set"].tolist().count(True) == 1 and members.at[("he", "adam"), "in_set"]
    assert members.at[("he", "adam"), "report_mean"] == pytest.approx(0.895, abs=0.002)
    assert len(result.comparisons) == 2 and all(c.verdict == "different" for c in result.comparisons)


def test_best_set_keeps_ties_with_the_best_and_counts_diverged_runs():
    frame = _combos({("he", "adam"): 0.90, ("xavier", "adam"): 0.90, ("orth", "sgd"): 0.85})
    frame.loc[(frame.init == "orth") & (frame.seed == 0), "val"] = np.nan
    result = stats.best_set(frame, "val", "test", ["init", "optimizer"])
    members = result.members.set_index(["init", "optimizer"])
    assert set(members.index[members["in_set"]]) == {("he", "adam"), ("xavier", "adam")}
    assert result.n_dropped == 1 and members.at[("orth", "sgd"), "n_dropped"] == 1


def test_best_set_of_one_combination_and_of_one_seed():
    single = stats.best_set(_combos({("he", "adam"): 0.9}), "val", "test", ["init", "optimizer"])
    assert single.best == ("he", "adam") and single.members["in_set"].tolist() == [True] and single.comparisons == ()
    one_seed = stats.best_set(
        _combos({("he", "adam"): 0.9, ("xavier", "sgd"): 0.5}, seeds=1), "val", "test", ["init", "optimizer"]
    )
    assert one_seed.members["in_set"].all() and one_seed.status.startswith("untestable")


# ---------------------------------------------------------------- wording


def test_describe_and_decision_rule():
    a, b = _shifted_pairs()
    text = stats.describe(stats.paired_difference(a, b))
    assert text.startswith("+1.") and "pp [" in text and "p = 0.0078 (Holm 0.0078): different" in text
    flat = stats.paired_difference([0.9, 0.91, 0.9, 0.91, 0.9, 0.91, 0.9], [0.91, 0.9, 0.9, 0.9, 0.91, 0.91, 0.9])
    assert stats.describe(flat, mde=0.007).endswith("not detected (MDE 0.70 pp)")
    assert stats.describe(stats.paired_difference([0.9], [0.8])).startswith("+10.00 pp, untestable: only one pair")
    assert "epochs" in stats.describe(stats.paired_difference([5] * 6, [6] * 6), unit="epochs", scale=1)
    rule = stats.decision_rule_text(0.9)
    assert "alpha = 0.1 " in rule and "Holm" in rule and "permutation" in rule and "bootstrap" in rule
    assert "alpha = 0.025 (97.5% confidence)" in stats.decision_rule_text(0.975)


# ---------------------------------------------------------------- properties: never raise, always a verdict

values = st.one_of(st.floats(-1e3, 1e3, allow_nan=False), st.sampled_from([0.0, 0.5, 1.0]))


@settings(max_examples=30)
@given(st.lists(st.tuples(values, values), max_size=6), st.sampled_from([0.9, 0.95, 0.99]))
def test_paired_difference_always_returns_a_verdict(pairs, confidence):
    a, b = [p[0] for p in pairs], [p[1] for p in pairs]
    c = stats.paired_difference(a, b, confidence, n_resamples=FEW)
    assert c.verdict in stats.VERDICTS
    assert c.p_value is None or 0 < c.p_value <= 1
    assert (c.verdict == "untestable") == (len(pairs) < 2)


@settings(max_examples=30)
@given(st.lists(values, max_size=6), st.lists(values, max_size=6))
def test_independent_difference_always_returns_a_verdict(a, b):
    c = stats.independent_difference(a, b, n_resamples=FEW)
    assert c.verdict in stats.VERDICTS and (c.p_value is None or 0 < c.p_value <= 1)


cell_value = st.one_of(values, st.just(float("nan")))
scattered = st.lists(
    st.tuples(
        st.sampled_from(["he", "xavier", "orth"]), st.sampled_from(["sgd", "adam"]), st.integers(0, 3), cell_value
    ),
    max_size=14,
)


@st.composite
def gridded(draw):
    """A (sub)grid of 1-3 inits x 1-2 optimizers x 1-4 seeds with some runs missing: reaches the fitted paths."""
    inits = draw(st.sampled_from([["he"], ["he", "xavier"], ["he", "xavier", "orth"]]))
    optimizers = draw(st.sampled_from([["sgd"], ["sgd", "adam"]]))
    cells = [(i, o, s) for i in inits for o in optimizers for s in range(draw(st.integers(1, 4)))]
    keep = draw(st.lists(st.booleans(), min_size=len(cells), max_size=len(cells)))
    return [(*cell, draw(cell_value)) for cell, k in zip(cells, keep) if k or len(cells) < 4]


rows = st.one_of(scattered, gridded())


@settings(max_examples=30)
@given(rows)
def test_factorial_anova_never_raises(data):
    frame = pd.DataFrame(data, columns=["init", "optimizer", "seed", "acc"])
    result = stats.factorial_anova(frame, "acc")
    assert isinstance(result.status, str) and result.status
    assert result.testable or result.table.empty
    if result.testable:
        assert (result.table["p"].dropna() > 0).all()


@settings(max_examples=30)
@given(rows)
def test_best_set_never_raises(data):
    frame = pd.DataFrame(data, columns=["init", "optimizer", "seed", "val"]).assign(test=lambda f: f.val)
    result = stats.best_set(frame, "val", "test", ["init", "optimizer"], n_resamples=FEW)
    assert all(c.verdict in stats.VERDICTS for c in result.comparisons)
    assert result.n_dropped == int(frame["val"].isna().sum())
    if result.best is not None:
        assert result.members["in_set"].any()
