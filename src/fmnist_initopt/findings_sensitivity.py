"""What the study could detect: the minimum detectable init effect of the test the report uses (the sign-flip
test over seeds, its power simulated or enumerated: power.py), the seeds a 0.3 pp MDE needs, and the measured
within-seed correlation that makes the seed, not the (optimizer, seed) pair, the unit."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fmnist_initopt import levels, power
from fmnist_initopt.findings_best import ACCURACY
from fmnist_initopt.findings_comparisons import FactorEvidence, level_text
from fmnist_initopt.wording import count, percent_points

# The init effect worth detecting: a 0.3 pp difference in final test accuracy (issue 13, item 7). The report
# states how many seeds would detect it with POWER at the study's own seed-to-seed noise.
MDE_GOAL = 0.003


@dataclass(frozen=True)
class Sensitivity:
    mde: power.DetectableEffect | None  # None when there is no init comparison at all
    needed: power.SeedsNeeded | None
    seeds: int  # seeds in the study
    pair: tuple | None  # (level, reference) the seed-level differences are of
    correlation: levels.SeedCorrelation | None
    family: int  # comparisons with the best init (the MDE's alpha is alpha / family: Bonferroni, conservative)
    reason: str  # why there is no MDE, when there is none


def sensitivity(frame: pd.DataFrame, found: FactorEvidence | None, confidence: float) -> Sensitivity:
    seeds = int(frame["seed"].nunique())
    if found is None or found.pooled.reference is None:
        why = "only one init was trained" if found is None else found.pooled.status.removeprefix("untestable: ")
        return Sensitivity(None, None, seeds, None, None, 0, f"there is no init comparison: {why}")
    comparisons = [c for c in found.pooled.comparisons if c.n_units > 0]
    family = max(len(comparisons), 1)
    alpha = found.pooled.comparisons[0].alpha / family if found.pooled.comparisons else 0.05
    variances, units = [], []
    for c in comparisons:
        d = levels.seed_differences(frame, ACCURACY, "init", c.level, c.reference, over=("optimizer",)).to_numpy()
        if len(d) >= 2:
            variances.append(float(np.var(d, ddof=1)))
            units.append(len(d))
    first = comparisons[0] if comparisons else None
    pair = (first.level, first.reference) if first else None
    correlation = (
        levels.within_seed_correlation(frame, ACCURACY, "init", pair[0], pair[1], "optimizer") if pair else None
    )
    if not units:
        reason = "fewer than two seeds have a test accuracy for two inits"
        return Sensitivity(None, None, seeds, pair, correlation, family, reason)
    sd, n = math.sqrt(float(np.mean(variances))), min(units)
    mde = power.minimum_detectable_effect(sd, n, alpha)
    needed = power.seeds_for_mde(sd, MDE_GOAL, alpha)
    return Sensitivity(mde, needed, seeds, pair, correlation, family, mde.reason)


def sensitivity_line(s: Sensitivity) -> str:
    head = "**What could it detect?**"
    if s.mde is None:
        return f"{head} Not estimable: {s.reason}."
    if s.mde.value is None:
        if not s.mde.reachable:
            return f"{head} No init effect, however large: {s.mde.reason}."
        return f"{head} Not estimable: {s.mde.reason}."
    return (
        f"{head} An init effect of {percent_points(s.mde.value)} or more "
        f"({s.mde.power:.0%} power, {count(s.mde.n_units, s.mde.unit)})."
    )


def sensitivity_evidence(s: Sensitivity) -> str:
    head = "**How small an init effect could this study see?**"
    if s.mde is None or s.mde.value is None:
        text = sensitivity_line(s).replace("**What could it detect?**", head)
        return f"{text} {seeds_needed_text(s)}".rstrip()
    family = f", alpha {s.mde.alpha:g}" + (
        f" (Bonferroni over the {s.family} comparisons with the best, standing in for the max-statistic test "
        "they are decided by)"
        if s.family > 1
        else ""
    )
    return (
        f"{head} With {count(s.seeds, 'seed')}, the minimum detectable init effect (MDE) is "
        f"{percent_points(s.mde.value)} of final test accuracy: the true difference the test would call different "
        f"with {s.mde.power:.0%} power{family}, the unit being the {s.mde.unit} ({count(s.mde.n_units, s.mde.unit)}, "
        f"each the mean of its {level_text(s.pair[0])} − {level_text(s.pair[1])} differences over the optimizers; "
        f"sd {percent_points(s.mde.sd)}), from the {s.mde.method}. {seeds_needed_text(s)}"
    ).rstrip()


def seeds_needed_text(s: Sensitivity) -> str:
    if s.needed is None:
        return ""
    goal = percent_points(MDE_GOAL, 1)
    if s.needed.units is None:
        return f"No seed count up to 100 reaches an MDE of {goal} ({s.needed.reason})."
    if s.needed.units <= s.seeds:
        return f"The study's {count(s.seeds, 'seed')} already reach an MDE of {goal}."
    return f"{count(s.needed.units, 'seed')} (now {s.seeds}) would bring it to {goal} or less."


def correlation_text(s: Sensitivity) -> str:
    """Methods' sentence: the measured correlation of one seed's init differences across optimizers."""
    if s.pair is None:
        return ""
    what = f"the {level_text(s.pair[0])} − {level_text(s.pair[1])} differences of one seed across optimizers"
    c = s.correlation
    if c is None:
        return (
            f"The within-seed correlation of {what} could not be measured here (it needs two optimizers, three "
            "seeds with every run, and differences that vary)."
        )
    values = list(c.pairs.values())
    pairs = (
        ", ".join(f"{a}–{b} {r:.2f}" for (a, b), r in c.pairs.items())
        if len(values) <= 6
        else f"{len(values)} pairs of optimizers, from {min(values):.2f} to {max(values):.2f}"
    )
    return (
        f"Measured within-seed correlation of {what}: mean Pearson r {c.mean:.2f} over {count(c.n_units, 'seed')} "
        f"({pairs}). Runs that share a seed are therefore not independent evidence, which is why every test "
        "counts seeds, not (optimizer, seed) pairs."
    )
