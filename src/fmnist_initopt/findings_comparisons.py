"""How findings.md writes a comparison (levels.LevelComparison and its stats.Comparison records): the one
phrase for a difference, its minimum detectable effect, and the tables of comparisons.

Every phrase reads the record's fields (factor, level, reference, scope, n_units, estimate, interval, p,
p_adjusted, verdict, reason); nothing is parsed back from a label. The interval beside a p-value comes from
the same test at the level its verdict was decided at, so 0 lies outside it exactly when the verdict is
"different"; should float ties at the interval's end ever break that, the phrase says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from fmnist_initopt import levels, power, stats
from fmnist_initopt.wording import finite, number, p_text, signed

RESULT = "estimate [interval], p: verdict"  # the comparison tables' result column
POWER = power.POWER


@dataclass(frozen=True)
class FactorEvidence:
    """One factor's levels compared on one response: pooled over the other factor seed by seed, and within each
    level of the other factor (one Holm family over all of them), against the pooled best level."""

    factor: str
    within: str
    pooled: levels.LevelComparison
    per_scope: tuple  # levels.LevelComparison per level of `within` (none when it has one level)
    within_levels: tuple  # the levels of `within` in the runs

    @property
    def pooled_label(self) -> str:
        """How a table names the pooled scope: "all optimizers", or the one optimizer there is."""
        return f"all {self.within}s" if len(self.within_levels) != 1 else str(self.within_levels[0])


def factor_evidence(
    frame: pd.DataFrame, response: str, factor: str, confidence: float, higher_is_better: bool = True
) -> FactorEvidence:
    within = "optimizer" if factor == "init" else "init"
    pooled = levels.compare_levels(
        frame, response, factor, confidence, over=(within,), higher_is_better=higher_is_better
    )
    per_scope = ()
    if pooled.reference is not None and frame[within].nunique() >= 2:
        per_scope = levels.compare_within(
            frame, response, factor, (within,), confidence, reference=pooled.reference,
            higher_is_better=higher_is_better,
        )  # fmt: skip
    return FactorEvidence(factor, within, pooled, per_scope, tuple(dict.fromkeys(frame[within])))


def level_text(level) -> str:
    """A level as the report names it: "he", or "he + adam" for a combination."""
    return " + ".join(map(str, level)) if isinstance(level, tuple) else str(level)


def scope_text(scope: dict) -> str:
    """ "all optimizers" style text is the caller's; a scope's own values: "adam", "depth 3, sgd"."""
    return ", ".join(f"depth {value}" if key == "depth" else str(value) for key, value in scope.items())


def detectable(
    comparison: stats.Comparison, family_size: int = 1, levels_compared: int = 2
) -> power.DetectableEffect | None:
    """The comparison's minimum detectable effect: the sign-flip test's power over its seeds, at the alpha of
    Holm's worst case in a family of `family_size` (the sd is the seed-level differences' own). None for an
    untestable comparison, and for one of more than two levels: the max-statistic test decided it, whose
    interval already shows the smallest gap it could exclude."""
    if comparison.p is None or levels_compared > 2:
        return None
    return power.minimum_detectable_effect(
        comparison.spread, comparison.n_units, comparison.alpha / max(family_size, 1), POWER, comparison.unit
    )


def interval_text(c: stats.Comparison, scale: float, digits: int) -> str:
    if finite(c.ci_low) and finite(c.ci_high):
        return f"[{number(c.ci_low * scale, digits)}, {number(c.ci_high * scale, digits)}]"
    return "[unbounded]"


def _agrees(c: stats.Comparison) -> bool:
    """Whether the interval and the verdict say the same: 0 outside the interval iff "different"."""
    outside = (finite(c.ci_low) and c.ci_low > 0) or (finite(c.ci_high) and c.ci_high < 0)
    return outside == (c.verdict == "different")


def mde_text(mde: power.DetectableEffect | None, unit: str, scale: float, digits: int) -> str:
    if mde is None:
        return ""
    if mde.value is None:
        return f" (too few {mde.unit}s to detect any effect)" if not mde.reachable else ""
    return f" (MDE {number(mde.value * scale, digits)}{' ' + unit if unit else ''} at {mde.power:.0%} power)"


def adjustment_text(c: stats.Comparison) -> str:
    """The adjusted p beside p, named by what was applied: " (Holm over 3 optimizers: 0.047)"; "" when the
    adjusted p is p itself (a family of one, or one scope's max-statistic p, already adjusted for the best)."""
    if c.p is None or c.p_adjusted is None or math.isclose(c.p_adjusted, c.p, rel_tol=1e-12):
        return ""
    return f" ({c.adjustment or 'adjusted'}: {p_text(c.p_adjusted, c.alpha)})"


def comparison_text(
    c: stats.Comparison,
    unit: str = "pp",
    scale: float = 100.0,
    digits: int = 2,
    mde: power.DetectableEffect | None = None,
    stated: str = "",
) -> str:
    """The one phrase for a difference, e.g. "+0.52 pp [0.21, 0.83], p = 0.031: different", "... p = 0.016
    (Holm over 3 optimizers: 0.047): different", "-0.10 pp [-0.40, 0.20], p = 0.62: not detected (MDE 0.34 pp
    at 80% power)",
    or "+0.10 pp, untestable: only one seed: ...". Parts of the reason already `stated` nearby (a table's
    common note) are left out."""
    u = f" {unit}" if unit else ""
    reason = "; ".join(part for part in c.reason.split("; ") if part and part not in stated)
    estimate = f"{signed(c.estimate * scale, digits)}{u}" if finite(c.estimate) else ""
    if c.verdict == "untestable":
        return f"{estimate + ', ' if estimate else ''}untestable: {reason or c.reason or 'no test possible'}"
    p = f"p {p_text(c.p, c.alpha)}" if p_text(c.p, c.alpha).startswith("<") else f"p = {p_text(c.p, c.alpha)}"
    text = f"{estimate} {interval_text(c, scale, digits)}, {p}{adjustment_text(c)}: {c.verdict}"
    if c.verdict == "not detected":
        text += mde_text(mde, unit, scale, digits)
    if not _agrees(c):
        text += " (the interval and the adjusted p disagree about 0 here, at a tie of the test; the adjusted p decides)"
    return f"{text}; {reason}" if reason else text


def comparison_rows(
    found: FactorEvidence, unit: str = "pp", scale: float = 100.0, label: str | None = None
) -> list[dict]:
    """Rows of a comparison table: the pooled comparisons, then each scope's (one family over all scopes)."""
    rows, within = [], found.within
    scoped_family = sum(len([c for c in s.comparisons if c.p is not None]) for s in found.per_scope)
    for pooled, comparison_set in [(True, found.pooled)] + [(False, s) for s in found.per_scope]:
        family = len([c for c in comparison_set.comparisons if c.p is not None]) if pooled else scoped_family
        for c in comparison_set.comparisons:
            mde = detectable(c, family, len(comparison_set.means))
            rows.append(
                {
                    **({"measure": label} if label else {}),
                    within: found.pooled_label if pooled else scope_text(c.scope),
                    "difference": f"{level_text(c.level)} − {level_text(c.reference)}",
                    RESULT: comparison_text(c, unit, scale, mde=mde, stated=table_note(found)),
                }
            )
    return rows


def table_note(found: FactorEvidence) -> str:
    """What the pooled comparison dropped (missing runs), said once under its table, not in every row."""
    status = found.pooled.status
    return "" if status == "ok" or status.startswith("untestable") else status
