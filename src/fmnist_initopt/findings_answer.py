"""findings.md's Answer: the study's answers in five short lines, then the evidence behind each.

The five questions: which init, does it depend on the optimizer, which optimizers differ, the best set, and
what the study could detect. Every verdict is the seed-level one (levels.compare_levels with the seed as the
unit, the max-statistic test for more than two levels; the repeated-measures ANOVA for the interaction), and
every sentence reads the comparison records' fields.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from fmnist_initopt import anova as anova_module
from fmnist_initopt import levels, stats
from fmnist_initopt.findings_best import ACCURACY, Selection, best_set_evidence, best_set_line
from fmnist_initopt.findings_comparisons import (
    FactorEvidence,
    comparison_rows,
    comparison_text,
    detectable,
    factor_evidence,
    level_text,
    scope_text,
    table_note,
)
from fmnist_initopt.findings_sensitivity import Sensitivity, sensitivity, sensitivity_evidence, sensitivity_line
from fmnist_initopt.wording import count, listing, markdown_table, names, number, p_is, p_text, percent_points, unique


@dataclass(frozen=True)
class Answers:
    """Everything the Answer says, computed once."""

    init: FactorEvidence | None  # None when only one init was trained
    optimizer: FactorEvidence | None  # None when only one optimizer was trained
    anova: anova_module.RepeatedMeasuresAnova
    selection: Selection
    sensitivity: Sensitivity
    alpha: float


def gather(frame: pd.DataFrame, selection: Selection, confidence: float) -> Answers:
    init = factor_evidence(frame, ACCURACY, "init", confidence) if frame["init"].nunique() >= 2 else None
    optimizer = factor_evidence(frame, ACCURACY, "optimizer", confidence) if frame["optimizer"].nunique() >= 2 else None
    anova = anova_module.repeated_measures_anova(frame, ACCURACY)
    return Answers(init, optimizer, anova, selection, sensitivity(frame, init, confidence), stats.alpha_of(confidence))


def _tested(found: FactorEvidence) -> list[stats.Comparison]:
    return [c for c in found.pooled.comparisons if c.verdict != "untestable"]


def _why_untestable(found: FactorEvidence, kind: str, frame: pd.DataFrame) -> str:
    """Why no level of `kind` (init or optimizer) could be compared, in words about that kind."""
    with_values = [level for level in unique(frame[kind]) if frame.loc[frame[kind] == level, ACCURACY].notna().any()]
    if len(with_values) < 2:
        lacking = [level for level in unique(frame[kind]) if level not in with_values]
        have = f"only {listing(with_values)} has" if with_values else "no " + kind + " has"
        return f"{have} completed runs ({listing(lacking)}: no completed run with a test accuracy)"
    if found.pooled.n_units < 2:
        seeds = "no seed has" if found.pooled.n_units == 0 else "only one seed has"
        return f"{seeds} a test accuracy for every {kind}: no seed-to-seed noise to test against"
    return found.pooled.status.removeprefix("untestable: ")


# ---------------------------------------------------------------------------------------------- the five lines


def init_line(answers: Answers, frame: pd.DataFrame) -> str:
    return _factor_line("**Which init?**", answers.init, "init", frame)


def _factor_line(head: str, found: FactorEvidence | None, kind: str, frame: pd.DataFrame) -> str:
    """The answer for one factor (init or optimizer): the best level and the levels it is better than."""
    if found is None:
        return f"{head} Untestable: only one {kind} ({frame[kind].iloc[0]}) was trained."
    tested = _tested(found)
    if not tested:
        return f"{head} Untestable: {_why_untestable(found, kind, frame)}."
    best = level_text(found.pooled.reference)
    better = [c for c in tested if c.verdict == "different"]
    if not better:
        return f"{head} No difference detected: {_widest_gap(tested, best, kind + 's')}{_untestable_note(found)}."
    rest = [c for c in tested if c.verdict != "different"]
    return (
        f"{head} **{best}** is better than {listing(level_text(c.level) for c in better)} {_gap(better)}"
        + (f"; not told apart from {listing(level_text(c.level) for c in rest)}" if rest else "")
        + f"{_untestable_note(found)}."
    )


def interaction_line(answers: Answers, frame: pd.DataFrame) -> str:
    head = "**Does it depend on the optimizer?**"
    if frame["init"].nunique() < 2 or frame["optimizer"].nunique() < 2:
        return f"{head} Untestable: only one {'init' if frame['init'].nunique() < 2 else 'optimizer'} was trained."
    p = answers.anova.interaction_p
    if p is None:
        return f"{head} Untestable: {answers.anova.status.removeprefix('untestable: ')}."
    if stats.verdict_of(p, answers.alpha) == "different":
        return (
            f"{head} **Yes**: the init effect differs between optimizers (init × optimizer {p_is(p, answers.alpha)})."
        )
    return f"{head} No dependence detected (init × optimizer {p_is(p, answers.alpha)})."


def optimizer_line(answers: Answers, frame: pd.DataFrame) -> str:
    return _factor_line("**Which optimizers differ?**", answers.optimizer, "optimizer", frame)


def _gap(better: list[stats.Comparison]) -> str:
    """The smallest detected gap to the best with its interval (the best minus the other level) and its p;
    with several levels beaten, the nearest one's, named as such."""
    nearest = max(better, key=lambda c: c.estimate)
    low, high = -nearest.ci_high, -nearest.ci_low
    interval = (
        f" [{number(low * 100, 2)}, {number(high * 100, 2)}]" if math.isfinite(low) and math.isfinite(high) else ""
    )
    which = f"{level_text(nearest.level)} by " if len(better) > 1 else "by "
    return f"({which}{percent_points(-nearest.estimate)}{interval}, {p_is(nearest.p_adjusted, nearest.alpha)})"


def _untestable_note(found: FactorEvidence) -> str:
    untestable = [level_text(c.level) for c in found.pooled.comparisons if c.verdict == "untestable"]
    return f"; {listing(untestable)} untestable" if untestable else ""


def _widest_gap(tested: list[stats.Comparison], best: str, kind: str) -> str:
    """The largest gap to the leader among comparisons that detected nothing, or that every mean is the same."""
    widest = min(tested, key=lambda c: c.estimate)
    p = p_is(widest.p_adjusted, widest.alpha)
    if widest.estimate == 0:
        return f"every {kind[:-1]} has the same mean ({p})"
    return f"{best} ahead of {level_text(widest.level)} by {percent_points(-widest.estimate)} ({p})"


def opening_lines(answers: Answers, frame: pd.DataFrame) -> list[str]:
    """The answer at a glance: one short line per question, each with its one number."""
    return [
        init_line(answers, frame),
        interaction_line(answers, frame),
        optimizer_line(answers, frame),
        best_set_line(answers.selection),
        sensitivity_line(answers.sensitivity),
    ]


# ---------------------------------------------------------------------------------------------- the evidence


def _comparison_list(found: FactorEvidence, frame: pd.DataFrame, kind: str) -> str:
    """Each pooled comparison with its phrase, and in how many seeds the best level was ahead."""
    parts = []
    family = len(_tested(found))
    for c in found.pooled.comparisons:
        mde = detectable(c, family, len(found.pooled.means))
        text = comparison_text(c, mde=mde, stated=table_note(found))
        ahead = ""
        if c.verdict != "untestable":
            d = levels.seed_differences(frame, ACCURACY, kind, c.level, c.reference, over=(found.within,))
            ahead = f"; {level_text(c.reference)} ahead in {int((d < 0).sum())} of {count(len(d), 'seed')}"
        parts.append(f"{level_text(c.level)} − {level_text(c.reference)}: {text}{ahead}")
    return "; ".join(parts)


def _anova_note(answers: Answers, factor: str, any_detected: bool) -> str:
    """The repeated-measures ANOVA's main effect, quoted where it disagrees with the comparisons' verdict."""
    p = answers.anova.p_of(factor)
    if p is None or (stats.verdict_of(p, answers.alpha) == "different") == any_detected:
        return ""
    side = (
        "the comparisons above, which also account for picking the best level, do not confirm it"
        if not any_detected
        else "the comparisons above still detect the difference named there"
    )
    return f" (The repeated-measures ANOVA gives {p_is(p, answers.alpha)} for the {factor} main effect; {side}.)"


def factor_evidence_text(answers: Answers, frame: pd.DataFrame, kind: str) -> str:
    """The evidence paragraph for "which init?" (kind "init") or "which optimizers differ?" ("optimizer")."""
    head = "**Which init?**" if kind == "init" else "**Which optimizers differ?**"
    found = answers.init if kind == "init" else answers.optimizer
    if found is None or not _tested(found):
        line = init_line(answers, frame) if kind == "init" else optimizer_line(answers, frame)
        return line
    best, within = level_text(found.pooled.reference), found.within
    better = [level_text(c.level) for c in found.pooled.comparisons if c.verdict == "different"]
    undetected = [level_text(c.level) for c in found.pooled.comparisons if c.verdict == "not detected"]
    untestable = [level_text(c.level) for c in found.pooled.comparisons if c.verdict == "untestable"]
    lead = f"Averaged over the {within}s seed by seed, **{best}** had the highest mean final test accuracy"
    if better:
        lead += f" and is better than {names(better)}"
    if undetected:
        lead += f"; no difference between **{best}** and {names(undetected)} was detected"
    if untestable:
        lead += f"; the comparison with {names(untestable)} is untestable (reason below)"
    method = found.pooled.method or f"no test; {count(found.pooled.n_units, 'seed')}"
    return (
        f"{head} {lead}. Comparisons ({method}): "
        f"{_comparison_list(found, frame, kind)}.{_anova_note(answers, kind, bool(better))}"
        + (f" Pooled over the {within}s: {table_note(found)}." if table_note(found) else "")
    )


def interaction_evidence(answers: Answers, frame: pd.DataFrame) -> str:
    head = "**Does the best init depend on the optimizer?**"
    line = interaction_line(answers, frame)
    p = answers.anova.interaction_p
    if p is None or answers.init is None:
        return line.replace("**Does it depend on the optimizer?**", head)
    where = "per optimizer (one Holm family over all optimizers) " + _per_optimizer_detections(answers.init)
    test = (
        f"init × optimizer interaction {p_is(p, answers.alpha)} (repeated-measures ANOVA with the seed as subject, "
        f"{count(answers.anova.n_units, 'seed')})"
    )
    if stats.verdict_of(p, answers.alpha) == "different":
        leaders = best_init_per_optimizer(frame)
        winners = {winner for winner, _ in leaders.values()}
        what = (
            f"the same init leads for every optimizer ({next(iter(winners))}); what depends on the optimizer is "
            "the size of its lead"
            if len(winners) == 1
            else "the init effect differs between optimizers"
        )
        per = ", ".join(f"{o}: {w} ({lead})" for o, (w, lead) in leaders.items())
        return (
            f"{head} **Yes**: {test}, at or below alpha {answers.alpha:g}: {what}. Highest mean per optimizer "
            f"(lead over the next init): {per}; {where}."
        )
    return (
        f"{head} No dependence detected: {test}, above alpha {answers.alpha:g}. Not detected is not evidence "
        f"that the init effect is the same under every optimizer: {where}."
    )


def _per_optimizer_detections(found: FactorEvidence) -> str:
    """Under which optimizers an init difference is detected on its own: the difference itself when the
    optimizer has one comparison, else how many of its comparisons."""
    shown = []
    for scope in found.per_scope:
        detected = [c for c in scope.comparisons if c.verdict == "different"]
        if len(scope.comparisons) == 1 and detected:
            c = detected[0]
            shown.append(
                f"{scope_text(scope.scope)} ({level_text(c.level)} − {level_text(c.reference)} "
                f"{percent_points(c.estimate, sign=True)})"
            )
        elif detected:
            shown.append(f"{scope_text(scope.scope)} ({len(detected)} of {len(scope.comparisons)} comparisons)")
    if not shown:
        return "no init difference is detected on its own"
    return f"the init difference is detected under {listing(shown)}"


def best_init_per_optimizer(frame: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """Per optimizer, the init with the highest mean final test accuracy and its lead over the next one."""
    leaders = {}
    cells = frame.groupby(["optimizer", "init"], sort=False)[ACCURACY].mean().dropna()
    for optimizer, means in cells.groupby(level=0, sort=False):
        means = means.droplevel(0).sort_values(ascending=False)
        if len(means) < 2:
            continue
        lead = float(means.iloc[0] - means.iloc[1])
        tied = [init for init, value in means.items() if abs(value - means.iloc[0]) <= 1e-12]
        winner = " = ".join(tied) if len(tied) > 1 else means.index[0]
        leaders[optimizer] = (winner, "tie" if len(tied) > 1 else f"+{percent_points(lead)}")
    return leaders


def anova_table(anova: anova_module.RepeatedMeasuresAnova) -> str:
    caption = (
        "Final test accuracy, repeated-measures ANOVA with the seed as subject: each effect is tested against its "
        "interaction with the seed (p Greenhouse-Geisser corrected)."
    )
    if not anova.testable:
        return f"{caption} {anova.status[0].upper()}{anova.status[1:]}."
    rows = [
        {
            "source": row.source,
            "df": f"{row.df:g}",
            "df error": f"{row.df_error:g}",
            "F": number(row.F, 2),
            "p": p_text(row.p_gg),
        }
        for row in anova.table.itertuples(index=False)
    ]
    note = "" if anova.status == "ok" else f"\n\nNote: {anova.status}."
    return f"{caption} {count(anova.n_units, 'seed')}.\n\n{markdown_table(rows)}{note}"


def comparison_section(answers: Answers, frame: pd.DataFrame) -> str:
    """## Initialisation × optimizer: every comparison behind the init and optimizer answers, as tables."""
    parts = ["## Initialisation × optimizer"]
    if answers.init is None:
        parts.append("Only one init was trained, so no init comparison is possible.")
    elif answers.init.pooled.reference is None:
        parts.append(f"No init comparison: {answers.init.pooled.status}.")
    else:
        parts.append(
            f"Final test accuracy, each init against the best-mean init ({level_text(answers.init.pooled.reference)}), "
            "the seed as the unit: first pooled over the optimizers (each seed's differences averaged over them), "
            "then within each optimizer (one Holm family across all optimizers). The MDE is the smallest true "
            "difference the comparison would detect with 80% power."
        )
        parts.append(markdown_table(comparison_rows(answers.init)))
        parts.append(_note(answers.init))
    if answers.optimizer is not None and answers.optimizer.pooled.reference is not None:
        parts.append(
            f"Each optimizer against the best-mean optimizer ({level_text(answers.optimizer.pooled.reference)}), "
            "pooled over the inits seed by seed, then within each init."
        )
        parts.append(markdown_table(comparison_rows(answers.optimizer)))
        parts.append(_note(answers.optimizer))
    return "\n\n".join(part for part in parts if part)


def _note(found: FactorEvidence) -> str:
    note = table_note(found)
    return f"Pooled over the {found.within}s: {note}." if note else ""


def answer_section(answers: Answers, frame: pd.DataFrame) -> list[str]:
    """The Answer: the five lines, then the evidence for each, then the ANOVA table."""
    return [
        "## Answer",
        "\n".join(f"- {line}" for line in opening_lines(answers, frame)),
        "### Evidence",
        factor_evidence_text(answers, frame, "init"),
        interaction_evidence(answers, frame),
        factor_evidence_text(answers, frame, "optimizer"),
        best_set_evidence(answers.selection),
        sensitivity_evidence(answers.sensitivity),
        anova_table(answers.anova),
    ]
