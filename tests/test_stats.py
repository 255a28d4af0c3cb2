"""Tests for fmnist_initopt.stats: the one decision rule every findings.md section uses."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.multitest import multipletests

from fmnist_initopt import best, stats

FEW = 999  # fewer resamples keep the property tests fast; exactness still holds up to 9 pairs


# ---------------------------------------------------------------- paired differences


def test_constant_pairs_give_the_exact_permutation_p_never_zero():
    c = stats.paired_difference([1, 1, 1], [2, 2, 2], confidence=0.95)
    assert c.p == pytest.approx(0.25, abs=1e-12)  # 2 / 2**3: exact, three seeds
    assert c.p > 0
    assert c.verdict == "not detected"
    # Three seeds can never reach p <= 0.05, so the test keeps every shift: the interval says so, it is not NaN.
    assert (c.estimate, c.ci_low, c.ci_high) == (-1.0, -math.inf, math.inf)
    assert "smallest possible p is 0.25" in c.reason and "3 seeds" in c.reason
    six = stats.paired_difference([1] * 6, [2] * 6)
    assert six.ci_low == pytest.approx(-1.0, abs=1e-9) and six.ci_high == pytest.approx(-1.0, abs=1e-9)  # degenerate


def test_identical_integer_shift_with_six_pairs_is_detected_at_the_exact_floor():
    # Epochs-to-target: every seed 1 epoch faster. Zero variance, yet p is 2/64, not 0.
    c = stats.paired_difference([5] * 6, [6] * 6)
    assert c.p == pytest.approx(2 / 64)
    assert c.verdict == "different" and c.reason == ""
    assert c.unit == "seed" and c.n_units == 6 and c.spread == 0.0


def test_zero_differences_give_p_one():
    c = stats.paired_difference([0.9, 0.8, 0.7, 0.6], [0.9, 0.8, 0.7, 0.6])
    assert c.p == pytest.approx(1.0) and c.estimate == 0.0 and c.verdict == "not detected"


def _shifted_pairs():
    rng = np.random.default_rng(3)
    base = rng.normal(0.88, 0.004, 8)
    return base + 0.01 + rng.normal(0, 0.002, 8), base


def test_big_consistent_shift_is_different_and_shuffled_data_is_not():
    a, b = _shifted_pairs()
    shifted = stats.paired_difference(a, b)
    assert shifted.verdict == "different" and shifted.n_units == 8
    assert shifted.p == pytest.approx(2 / 2**8)  # every difference positive: the exact floor
    assert 0.005 < shifted.ci_low < shifted.estimate < shifted.ci_high < 0.015
    # Same values, swapped between the groups in every other pair: the "effect" has no consistent sign any more.
    swap = np.arange(8) % 2 == 0
    shuffled = stats.paired_difference(np.where(swap, b, a), np.where(swap, a, b))
    assert shuffled.verdict == "not detected" and shuffled.p > 0.3
    assert shuffled.ci_low < 0 < shuffled.ci_high  # the interval agrees with the verdict


def test_fewer_than_two_pairs_is_untestable_and_nan_pairs_are_dropped():
    c = stats.paired_difference([0.9], [0.8])
    assert c.verdict == "untestable" and c.p is None and c.p_adjusted is None
    assert "no seed-to-seed noise" in c.reason
    c = stats.paired_difference([0.9, np.nan, 0.7], [0.8, 0.8, np.nan])
    assert c.verdict == "untestable" and "2 incomplete seeds dropped" in c.reason
    with pytest.raises(ValueError):
        stats.paired_difference([1, 2], [1, 2, 3])


def test_alpha_is_one_minus_confidence_and_the_rule_is_p_at_most_alpha():
    assert stats.alpha_of(0.95) == 0.05
    assert stats.paired_difference([5] * 6, [6] * 6, confidence=0.99).verdict == "not detected"  # 0.031 > 0.01
    with pytest.raises(ValueError):
        stats.alpha_of(95)
    assert stats.verdict_of(0.05, 0.05) == "different" and stats.verdict_of(0.0500001, 0.05) == "not detected"
    assert stats.verdict_of(None, 0.05) == stats.verdict_of(math.nan, 0.05) == "untestable"


@pytest.mark.parametrize(
    ("p", "alpha", "shown"),
    [
        (0.0498, 0.05, 0.0498),
        (0.0502, 0.05, 0.0502),
        (0.031, 0.05, 0.031),
        (0.03125, 0.05, 0.031),
        (0.0501, 0.1, 0.05),
        (0.05, 0.05, 0.05),
        (0.0124, 0.0125, 0.012),
        (0.01251, 0.0125, 0.013),
        (0.4, 0.05, 0.4),
    ],
)
def test_displayed_p_never_crosses_alpha(p, alpha, shown):
    assert stats.display_p(p, alpha) == shown
    assert stats.verdict_of(stats.display_p(p, alpha), alpha) == stats.verdict_of(p, alpha)


@settings(max_examples=200)
@given(st.floats(1e-6, 1.0), st.sampled_from([0.1, 0.05, 0.025, 0.0125, 0.01, 0.05 / 3]))
def test_displayed_p_agrees_with_the_verdict(p, alpha):
    shown = stats.display_p(p, alpha)
    assert stats.verdict_of(shown, alpha) == stats.verdict_of(p, alpha)
    assert (shown == alpha) == (p == alpha)


# ---------------------------------------------------------------- Holm


def _comp(p, level):
    return stats.Comparison("init", level, "he", {}, 8, 0.1, 0.0, 0.2, p, p, stats.verdict_of(p, 0.05))


def test_holm_matches_statsmodels_and_hand_values_and_keeps_untestables():
    ps = [0.01, 0.04, 0.03, 0.2]
    untestable = stats.untestable("init", "u", "he", {}, 1, 0.1, "one seed", "test", 0.05)
    out = stats.holm([_comp(p, str(i)) for i, p in enumerate(ps)] + [untestable], confidence=0.95)
    adjusted = [c.p_adjusted for c in out[:4]]
    assert adjusted == pytest.approx(list(multipletests(ps, method="holm")[1]))
    assert adjusted == pytest.approx([0.04, 0.09, 0.09, 0.2])  # by hand: 4*.01, max(3*.03, .04), 2*.04 -> .09, .2
    assert [c.verdict for c in out] == ["different", "not detected", "not detected", "not detected", "untestable"]
    assert out[4] == untestable
    assert [c.p for c in out[:4]] == ps  # raw p-values untouched


def test_holm_recomputes_sign_flip_intervals_so_they_agree_with_the_holm_verdict():
    rng = np.random.default_rng(4)
    family = [stats.paired_difference(rng.normal(shift, 1, 8), np.zeros(8)) for shift in (1.5, 0.9, 0.8, 0.0)]
    adjusted = stats.holm(family)
    assert any(c.verdict == "different" for c in family)
    for before, after in zip(family, adjusted):
        assert (after.verdict == "different") == (after.ci_low > 0 or after.ci_high < 0)
        assert after.ci_low <= before.ci_low and after.ci_high >= before.ci_high  # a stricter level: wider
    assert sum(c.verdict == "different" for c in adjusted) < sum(c.verdict == "different" for c in family)


def test_holm_is_vectorised_over_families_and_skips_nan():
    p = np.array([[0.01, 0.04, np.nan, 0.03], [0.2, 0.001, 0.5, np.nan]])
    adjusted = stats.holm_adjusted(p)
    for row, out in zip(p, adjusted):
        keep = np.isfinite(row)
        assert out[keep] == pytest.approx(multipletests(row[keep], method="holm")[1])
        assert np.isnan(out[~keep]).all()
    assert stats.holm_adjusted(p.T, axis=0) == pytest.approx(adjusted.T, nan_ok=True)


@settings(max_examples=100)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=10), st.sampled_from([0.05, 0.1, 0.01]))
def test_holm_levels_decide_exactly_as_holm(p_values, alpha):
    levels = stats.holm_levels(p_values, alpha)
    adjusted = stats.holm_adjusted(p_values)
    assert ((np.asarray(p_values) <= levels) == (adjusted <= alpha)).all()
    assert (levels >= alpha / len(p_values) - 1e-15).all() and (levels <= alpha).all()


@settings(max_examples=10)  # statsmodels' multipletests runs gc.collect() per call: slow in a full test process
@given(st.lists(st.floats(0, 1), min_size=1, max_size=12))
def test_holm_adjusted_equals_statsmodels(p_values):
    expected = multipletests(p_values, method="holm")[1]
    assert stats.holm_adjusted(p_values) == pytest.approx(list(expected), abs=1e-12)


def test_mean_interval_is_descriptive_and_degenerate_cases_are_explicit():
    low, high = stats.mean_interval([0.80, 0.85, 0.93, np.nan], 0.95)  # the NaN (a diverged run) is ignored
    assert low < np.mean([0.80, 0.85, 0.93]) < high
    assert all(math.isnan(bound) for bound in stats.mean_interval([0.9], 0.95))  # one seed: no interval
    assert stats.mean_interval([0.9, 0.9], 0.95) == (0.9, 0.9)


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
    result = best.best_set(frame, "val", "test", ["init", "optimizer"])
    assert result.best == ("he", "adam")
    members = result.members.set_index(["init", "optimizer"])
    assert members["in_set"].tolist().count(True) == 1 and members.at[("he", "adam"), "in_set"]
    assert members.at[("he", "adam"), "report_mean"] == pytest.approx(0.895, abs=0.002)
    assert len(result.comparisons) == 2 and all(c.verdict == "different" for c in result.comparisons)


def test_best_set_keeps_ties_with_the_best_and_counts_diverged_runs():
    frame = _combos({("he", "adam"): 0.90, ("xavier", "adam"): 0.90, ("orth", "sgd"): 0.85})
    frame.loc[(frame.init == "orth") & (frame.seed == 0), "val"] = np.nan
    result = best.best_set(frame, "val", "test", ["init", "optimizer"])
    members = result.members.set_index(["init", "optimizer"])
    assert set(members.index[members["in_set"]]) == {("he", "adam"), ("xavier", "adam")}
    assert result.n_dropped == 1 and members.at[("orth", "sgd"), "n_dropped"] == 1


def test_best_set_of_one_combination_and_of_one_seed():
    single = best.best_set(_combos({("he", "adam"): 0.9}), "val", "test", ["init", "optimizer"])
    assert single.best == ("he", "adam") and single.members["in_set"].tolist() == [True] and single.comparisons == ()
    one_seed = best.best_set(
        _combos({("he", "adam"): 0.9, ("xavier", "sgd"): 0.5}, seeds=1), "val", "test", ["init", "optimizer"]
    )
    assert one_seed.members["in_set"].all() and one_seed.status.startswith("untestable")


# ---------------------------------------------------------------- wording


def test_the_decision_rule_names_the_unit_the_tests_and_where_holm_applies():
    rule = stats.decision_rule_text(0.9)
    assert "alpha = 0.1 " in rule and "Holm" in rule and "sign-flip" in rule and "the unit is the seed" in rule
    assert "p <= 0.1" in rule and "nothing more is applied within one question" in rule
    assert "alpha = 0.025 (97.5% confidence)" in stats.decision_rule_text(0.975)


def test_a_record_says_what_its_adjusted_p_adds_and_the_smallest_p_its_test_can_reach():
    a, b = _shifted_pairs()
    alone = stats.paired_difference(a, b)
    assert alone.adjustment == "" and alone.p_adjusted == alone.p  # a family of one
    assert alone.smallest_p == pytest.approx(2 / 2**8)
    family = stats.holm([alone, stats.paired_difference(b, a + 0.001)])
    assert {c.adjustment for c in family} == {"Holm over 2 comparisons"}
    one = stats.paired_difference([0.9], [0.8])
    assert one.smallest_p is None and one.adjustment == ""


# ---------------------------------------------------------------- properties: never raise, always a verdict

values = st.one_of(st.floats(-1e3, 1e3, allow_nan=False), st.sampled_from([0.0, 0.5, 1.0]))


@settings(max_examples=30)
@given(st.lists(st.tuples(values, values), max_size=6), st.sampled_from([0.9, 0.95, 0.99]))
def test_paired_difference_always_returns_a_verdict(pairs, confidence):
    a, b = [p[0] for p in pairs], [p[1] for p in pairs]
    c = stats.paired_difference(a, b, confidence, n_resamples=FEW)
    assert c.verdict in stats.VERDICTS
    assert c.p is None or 0 < c.p <= 1
    assert (c.verdict == "untestable") == (len(pairs) < 2)


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
def test_best_set_never_raises(data):
    frame = pd.DataFrame(data, columns=["init", "optimizer", "seed", "val"]).assign(test=lambda f: f.val)
    result = best.best_set(frame, "val", "test", ["init", "optimizer"], n_resamples=FEW)
    assert all(c.verdict in stats.VERDICTS for c in result.comparisons)
    assert result.n_dropped == int(frame["val"].isna().sum())
    if result.best is not None:
        assert result.members["in_set"].any()
