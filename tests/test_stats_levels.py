"""Tests for the seed-unit comparisons from tables of runs: levels, best, anova, units."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.anova import AnovaRM

from fmnist_initopt import anova, best, levels, maxstat, signflip, stats, units

FEW = 999
OPTIMIZERS = ("adam", "sgd", "rmsprop")


def study(seeds=8, inits=("he", "xavier"), optimizers=OPTIMIZERS, effects=None, rng_seed=0, noise=0.001):
    """Runs with a seed shift, a per-seed init draw shared by the optimizers (correlated differences) and
    `effects` keyed by init, optimizer or (init, optimizer)."""
    rng = np.random.default_rng(rng_seed)
    effects = effects or {}
    rows = []
    for s in range(seeds):
        shift, draw = rng.normal(0, 0.002), {i: rng.normal(0, 0.002) for i in inits}
        for i in inits:
            for o in optimizers:
                value = 0.9 + shift + draw[i] + rng.normal(0, noise)
                value += effects.get(i, 0) + effects.get(o, 0) + effects.get((i, o), 0)
                rows.append({"init": i, "optimizer": o, "seed": s, "acc": value, "val": value})
    return pd.DataFrame(rows)


def consistent(c: stats.Comparison) -> bool:
    """The interval excludes 0 exactly when the verdict is "different"."""
    return (c.verdict == "different") == (c.ci_low > 0 or c.ci_high < 0)


# ---------------------------------------------------------------- two levels, pooled over the other factor


def test_the_init_answer_averages_each_seed_over_the_optimizers_first():
    frame = study(effects={"he": 0.004})
    result = levels.compare_levels(frame, "acc", "init", over=("optimizer",))
    assert result.best == "he" and result.reference == "he" and result.status == "ok" and result.n_units == 8
    (c,) = result.comparisons
    per_seed = frame.pivot_table(index="seed", columns="init", values="acc").eval("xavier - he")
    direct = stats.paired_difference(per_seed, np.zeros(8))
    assert (c.factor, c.level, c.reference, c.scope, c.unit, c.n_units) == ("init", "xavier", "he", {}, "seed", 8)
    assert (c.estimate, c.p, c.ci_low, c.ci_high) == pytest.approx(
        (direct.estimate, direct.p, direct.ci_low, direct.ci_high)
    )
    assert c.verdict == "different" and consistent(c) and c.spread == pytest.approx(per_seed.std())
    assert c.adjustment == "" and c.smallest_p == pytest.approx(signflip.smallest_p(8))
    assert levels.seed_differences(
        frame, "acc", "init", "xavier", "he", over=("optimizer",)
    ).to_numpy() == pytest.approx(per_seed.to_numpy())
    assert result.critical == pytest.approx(c.ci_high - c.estimate)


def test_a_diverged_run_drops_its_block_not_its_seed():
    frame = study(effects={"he": 0.004})
    frame.loc[(frame.init == "xavier") & (frame.optimizer == "sgd") & (frame.seed == 2), "acc"] = np.nan
    result = levels.compare_levels(frame, "acc", "init", over=("optimizer",))
    assert result.n_units == 8 and "1 (seed, optimizer) block(s)" in result.status
    diffs = levels.seed_differences(frame, "acc", "init", "xavier", "he", over=("optimizer",))
    both = frame[(frame.seed == 2) & (frame.optimizer != "sgd")].pivot_table(
        index="optimizer", columns="init", values="acc"
    )
    assert diffs.loc[2] == pytest.approx((both["xavier"] - both["he"]).mean())


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (study(inits=("he",)), "only one level (he)"),
        (study(seeds=1), "only one seed has every level"),
        (study().assign(acc=np.nan), "no run has a finite acc"),
    ],
)
def test_degenerate_studies_say_what_happened(frame, expected):
    result = levels.compare_levels(frame, "acc", "init", over=("optimizer",))
    assert result.status.startswith("untestable") and expected in result.status
    assert all(c.verdict == "untestable" and c.reason for c in result.comparisons)


def test_identical_values_give_p_one_and_a_point_interval():
    (c,) = levels.compare_levels(study().assign(acc=0.9), "acc", "init", over=("optimizer",)).comparisons
    assert c.p == 1.0 and c.verdict == "not detected" and c.estimate == 0.0
    assert c.ci_low == pytest.approx(0.0, abs=1e-12) and c.ci_high == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------- more levels: max-statistic


def test_the_optimizer_answer_excludes_a_clearly_worse_optimizer_and_keeps_a_tie():
    frame = study(effects={"sgd": -0.01})
    result = levels.compare_levels(frame, "acc", "optimizer", over=("init",), n_resamples=FEW)
    verdicts = {c.level: c.verdict for c in result.comparisons}
    assert result.best in ("adam", "rmsprop") and verdicts["sgd"] == "different"
    assert verdicts[({"adam", "rmsprop"} - {result.best}).pop()] == "not detected"
    assert all(consistent(c) and c.p == c.p_adjusted for c in result.comparisons)
    assert 0 < result.critical < 0.01 and "max-statistic" in result.method


def test_per_optimizer_comparisons_are_one_holm_family_with_consistent_intervals():
    frame = study(effects={("he", "sgd"): 0.006})  # the init matters under SGD only
    family = levels.compare_within(frame, "acc", "init", ("optimizer",), reference="he")
    assert [lc.scope for lc in family] == [{"optimizer": o} for o in OPTIMIZERS]
    comparisons = [c for lc in family for c in lc.comparisons]
    assert [(c.level, c.reference, c.scope) for c in comparisons] == [
        ("xavier", "he", {"optimizer": o}) for o in OPTIMIZERS
    ]
    assert [c.p_adjusted for c in comparisons] == pytest.approx(list(stats.holm_adjusted([c.p for c in comparisons])))
    assert {c.adjustment for c in comparisons} == {"Holm over 3 optimizers"}
    assert {c.scope["optimizer"]: c.verdict for c in comparisons}["sgd"] == "different"
    assert all(consistent(c) for c in comparisons)


def test_a_family_of_scopes_with_three_levels_adjusts_over_scopes_not_twice():
    frame = study(inits=("he", "xavier", "orth"), effects={"orth": -0.01})
    pooled = levels.compare_levels(frame, "acc", "init", over=("optimizer",), n_resamples=FEW)
    assert all(c.p_adjusted == c.p and c.adjustment == "" for c in pooled.comparisons)  # the max-statistic p as is
    assert [c.smallest_p for c in pooled.comparisons] == [maxstat.smallest_p(8, (3,), FEW)] * 2
    family = levels.compare_within(frame, "acc", "init", ("optimizer",), n_resamples=FEW)
    for lc in family:
        assert all(c.p_adjusted >= c.p and consistent(c) for c in lc.comparisons)
        assert {c.adjustment for c in lc.comparisons} == {"Holm over 3 optimizers"}
    smallest = sorted(min(c.p for c in lc.comparisons) for lc in family)
    assert min(c.p_adjusted for lc in family for c in lc.comparisons) == pytest.approx(3 * smallest[0])


def closed_testing(p: list[dict], alpha: float) -> list[dict]:
    """Brute force of the family's rule: comparison i is rejected iff every set of comparisons holding it is
    rejected by its local test (Bonferroni over the scopes it touches of each scope's smallest p in the set)."""
    items = [(j, level) for j, scope in enumerate(p) for level in scope]
    rejected = [{} for _ in p]
    for j, level in items:
        others = [item for item in items if item != (j, level)]
        kept = False
        for mask in range(1 << len(others)):
            chosen = [(j, level)] + [item for b, item in enumerate(others) if mask >> b & 1]
            touched = {k for k, _ in chosen}
            local = min(min(p[k][lv] for kk, lv in chosen if kk == k) for k in touched) * len(touched)
            kept |= local > alpha
        rejected[j][level] = not kept
    return rejected


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.dictionaries(st.sampled_from("abc"), st.floats(1e-4, 1.0), max_size=3), min_size=1, max_size=4),
    st.sampled_from([0.05, 0.1]),
)
def test_holm_over_scopes_is_the_closed_test_and_its_levels_decide_alike(p, alpha):
    levels_alpha, adjusted = levels.holm_over_scopes(p, alpha)
    expected = closed_testing(p, alpha)
    for j, scope in enumerate(p):
        for level, value in scope.items():
            assert (adjusted[j][level] <= alpha) == expected[j][level]
            assert (value <= levels_alpha[j]) == expected[j][level]
            assert adjusted[j][level] >= value
    if all(len(scope) == 1 for scope in p if scope):  # one comparison per scope: exactly Holm
        flat = [value for scope in p for value in scope.values()]
        assert [v for scope in adjusted for v in scope.values()] == pytest.approx(list(stats.holm_adjusted(flat)))


# ---------------------------------------------------------------- within-seed correlation


def test_within_seed_correlation_measures_shared_seed_draws():
    frame = study(seeds=30, noise=0.0002)  # the init draw dominates: differences move together
    found = levels.within_seed_correlation(frame, "acc", "init", "xavier", "he", "optimizer")
    assert found.mean > 0.8 and len(found.pairs) == 3 and found.n_units == 30
    independent = study(seeds=30, noise=0.01)
    assert abs(levels.within_seed_correlation(independent, "acc", "init", "xavier", "he", "optimizer").mean) < 0.3
    assert (
        levels.within_seed_correlation(study(optimizers=("adam",)), "acc", "init", "xavier", "he", "optimizer") is None
    )
    assert levels.within_seed_correlation(study(seeds=2), "acc", "init", "xavier", "he", "optimizer") is None
    assert levels.within_seed_correlation(study().assign(acc=0.9), "acc", "init", "xavier", "he", "optimizer") is None


# ---------------------------------------------------------------- repeated-measures ANOVA


def test_repeated_measures_anova_equals_statsmodels_anovarm():
    frame = study(inits=("he", "xavier", "orth"), effects={"he": 0.002, "sgd": -0.003}, noise=0.002)
    result = anova.repeated_measures_anova(frame, "acc")
    reference = AnovaRM(frame, "acc", "seed", within=["init", "optimizer"]).fit().anova_table
    table = result.table.set_index("source")
    assert list(table.index) == ["init", "optimizer", "init:optimizer"] and result.status == "ok"
    assert table["F"].to_numpy() == pytest.approx(reference["F Value"].to_numpy())
    assert table["p"].to_numpy() == pytest.approx(reference["Pr > F"].to_numpy())
    assert table["df_error"].to_numpy() == pytest.approx(reference["Den DF"].to_numpy())
    assert (
        result.p_of("init") == table.at["init", "p_gg"] and result.interaction_p == table.at["init:optimizer", "p_gg"]
    )


def test_greenhouse_geisser_epsilon_equals_boxs_formula():
    frame = study(seeds=10, inits=("he",), noise=0.003, effects={"sgd": 0.001})
    cells = frame.pivot_table(index="seed", columns="optimizer", values="acc")[list(OPTIMIZERS)].to_numpy()
    k = cells.shape[1]
    centre = np.eye(k) - 1 / k
    s = centre @ np.cov(cells, rowvar=False) @ centre
    box = np.trace(s) ** 2 / ((k - 1) * np.trace(s @ s))
    result = anova.repeated_measures_anova(frame, "acc")
    assert result.table.set_index("source").at["optimizer", "epsilon"] == pytest.approx(box)
    assert "init has one level (he)" in result.status


def test_repeated_measures_anova_drops_incomplete_seeds_and_says_so():
    frame = study()
    frame.loc[(frame.seed == 3) & (frame.init == "he") & (frame.optimizer == "adam"), "acc"] = np.nan
    result = anova.repeated_measures_anova(frame, "acc")
    assert result.testable and result.n_units == 7 and result.n_dropped_units == 1
    assert "1 of 8 seeds without a run in every combination dropped" in result.status
    assert not anova.repeated_measures_anova(study(seeds=1), "acc").testable
    assert "no variance" in anova.repeated_measures_anova(study().assign(acc=0.9), "acc").status


# ---------------------------------------------------------------- best set


def test_the_default_study_excludes_a_clearly_worse_combination():
    frame = study(effects={("xavier", "sgd"): -0.008})  # 6 combinations x 8 seeds
    found = best.best_set(frame, "val", "acc", ["init", "optimizer"])
    members = found.members.set_index(["init", "optimizer"])
    assert not members.at[("xavier", "sgd"), "in_set"] and members["in_set"].sum() == 5
    assert found.status == "ok" and found.n_units == 8 and 0 < found.smallest_excludable_gap < 0.008
    worse = next(c for c in found.comparisons if c.level == ("xavier", "sgd"))
    assert worse.factor == ("init", "optimizer") and worse.reference == found.best and consistent(worse)
    assert all(consistent(c) for c in found.comparisons)


def test_best_set_degenerate_cases_never_raise():
    one = best.best_set(study(inits=("he",), optimizers=("adam",)), "val", "acc", ["init", "optimizer"])
    assert one.best == ("he", "adam") and one.members["in_set"].tolist() == [True] and "one member" in one.status
    seed = best.best_set(study(seeds=1), "val", "acc", ["init", "optimizer"])
    assert seed.members["in_set"].all() and seed.status.startswith("untestable")
    flat = best.best_set(study().assign(val=0.9), "val", "acc", ["init", "optimizer"])
    assert flat.members["in_set"].all() and all(c.p == 1.0 for c in flat.comparisons)
    gone = best.best_set(study().assign(val=np.nan), "val", "acc", ["init", "optimizer"])
    assert gone.best is None and not gone.members["in_set"].any() and gone.n_dropped == 48


def test_a_combination_that_lost_most_seeds_is_left_out_of_the_test_not_the_seeds():
    frame = study(effects={("xavier", "sgd"): -0.008})
    frame.loc[(frame.init == "he") & (frame.optimizer == "rmsprop") & (frame.seed < 5), "val"] = np.nan
    matrix = units.unit_matrix(frame, "val", ["init", "optimizer"])
    assert matrix.dropped_levels == [("he", "rmsprop")] and len(matrix.units) == 8
    found = best.best_set(frame, "val", "acc", ["init", "optimizer"])
    members = found.members.set_index(["init", "optimizer"])
    assert members.at[("he", "rmsprop"), "in_set"] and found.n_dropped == 5  # untested: cannot be excluded
    assert "incomplete grid" in found.status and not members.at[("xavier", "sgd"), "in_set"]


# ---------------------------------------------------------------- properties: never raise, never contradict

cell = st.one_of(st.floats(0.0, 1.0), st.just(float("nan")), st.sampled_from([0.5, 0.9]))


@st.composite
def runs(draw):
    inits = draw(st.sampled_from([["he"], ["he", "xavier"], ["he", "xavier", "orth"]]))
    optimizers = draw(st.sampled_from([["sgd"], ["sgd", "adam"]]))
    seeds = draw(st.integers(1, 5))
    rows = [(i, o, s, draw(cell)) for i in inits for o in optimizers for s in range(seeds)]
    keep = draw(st.lists(st.booleans(), min_size=len(rows), max_size=len(rows)))
    return pd.DataFrame([r for r, k in zip(rows, keep) if k] or rows[:1], columns=["init", "optimizer", "seed", "acc"])


@settings(max_examples=40, deadline=None)
@given(runs(), st.sampled_from([0.9, 0.95]))
def test_comparisons_never_raise_and_never_contradict_their_intervals(frame, confidence):
    frame = frame.assign(val=frame["acc"])
    results = [
        levels.compare_levels(frame, "acc", "init", confidence, over=("optimizer",), n_resamples=FEW),
        *levels.compare_within(frame, "acc", "init", ("optimizer",), confidence, n_resamples=FEW),
    ]
    found = best.best_set(frame, "val", "acc", ["init", "optimizer"], confidence, n_resamples=FEW)
    table = anova.repeated_measures_anova(frame, "acc")
    assert table.status and (table.testable or table.table.empty)
    for c in [c for r in results for c in r.comparisons] + list(found.comparisons):
        assert c.verdict in stats.VERDICTS and (c.p is None) == (c.verdict == "untestable")
        if c.p is not None:
            assert 0 < c.p <= 1 and consistent(c)
    assert all(r.status for r in results) and found.status


def test_the_sign_flip_core_never_overflows_and_refuses_bad_input():
    assert signflip.smallest_p(10_000) == pytest.approx(1 / 10_000)
    assert signflip.smallest_p(1023) > 0 and math.isfinite(signflip.smallest_p(1023))
    with pytest.raises(ValueError, match="finite"):
        signflip.sign_flip([1.0, np.nan])
