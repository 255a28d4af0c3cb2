"""results/findings.md: the study's answer, every sentence filled in from the runs.

Every statistical statement comes from fmnist_initopt.stats and its one decision rule: init differences are
paired on (optimizer, seed), tested with exact permutation tests, Holm-corrected within each family, and a
difference is "different", "not detected" (with the minimum detectable effect, so absence of evidence is not
read as equality) or "untestable" (with the reason). The headline answers the brief's Task 5.2 from the
init x optimizer design as a whole (two-way ANOVA with seed as block) rather than from one cell at a time.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fmnist_initopt import stats
from fmnist_initopt.aggregate import combination_label

ACCURACY = "test_accuracy"  # what the answer reports
SELECTION = "final_val_accuracy"  # what "best" is chosen on, so the test set only scores the choice
SPEED = {
    "mean_val_accuracy": ("mean validation accuracy over epochs", True),
    "epoch1_val_accuracy": ("epoch-1 validation accuracy", True),
    "epochs_to_target_censored": ("epochs to target (never = epochs + 1)", False),
}
# Per-run metrics that describe a combination only when the run completed; a diverged run's partial
# curve or missing test result must not count. Epochs to target keeps every run (never reached = censored).
COMPLETED_ONLY = [
    "test_accuracy",
    "final_val_accuracy",
    "best_val_accuracy",
    "mean_val_accuracy",
    "epoch1_val_accuracy",
]
# The init effect worth detecting: a 0.3 pp difference in final test accuracy (issue 13, item 7). The report
# states how many seeds would detect it with POWER at the study's own noise.
MDE_GOAL = 0.003
RESULT = "estimate [CI], p (Holm): verdict"  # the comparison tables' result column
POWER = 0.8
SUGGESTED_LR_FACTOR = 10


# ---------------------------------------------------------------------------------------------- formatting


def number(value: float, digits: int = 4) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def percent_points(value: float, digits: int = 2) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value * 100:.{digits}f} pp"


def p_text(p: float | None) -> str:
    if p is None or not math.isfinite(p):
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.2g}"


def p_is(p: float) -> str:
    """'p = 0.03' or 'p < 0.001', for prose."""
    text = p_text(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def mean_with_interval(values, confidence: float, digits: int = 4, limits: tuple[float, float] | None = None) -> str:
    """Mean over seeds with its descriptive interval (stats.mean_interval) when there are two or more values,
    cut to the metric's possible `limits` (with two seeds a t-interval of an accuracy can reach beyond 0 and 1)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if not values.size:
        return "n/a"
    text = number(float(values.mean()), digits)
    low, high = stats.mean_interval(values, confidence)
    if limits:
        low, high = max(low, limits[0]), min(high, limits[1])
    return text if math.isnan(low) else f"{text} [{number(low, digits)}, {number(high, digits)}]"


def accuracy_with_interval(values, confidence: float) -> str:
    return mean_with_interval(values, confidence, limits=(0.0, 1.0))


def markdown_table(rows: list[dict[str, Any]]) -> str:
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True) if rows else ""


def unique(values) -> list:
    return list(dict.fromkeys(values))


def names(items) -> str:
    items = [f"**{item}**" for item in items]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# ---------------------------------------------------------------------------------------------- data


def analysed(summary: pd.DataFrame) -> pd.DataFrame:
    """The per-run table as every test sees it: completed-run metrics blanked for runs that did not complete."""
    frame = summary.copy()
    incomplete = frame["status"] != "completed"
    for column in COMPLETED_ONLY:
        if column in frame:
            frame.loc[incomplete, column] = math.nan
    return frame


def combination_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (init, optimizer), in grid order: seeds, completed, diverged."""
    grouped = frame.groupby(["init", "optimizer"], sort=False)
    return pd.DataFrame(
        {
            "n_seeds": grouped.size(),
            "n_completed": grouped["status"].apply(lambda s: int((s == "completed").sum())),
            "n_diverged": grouped["status"].apply(lambda s: int((s == "diverged").sum())),
        }
    ).reset_index()


def seeds_text(row) -> str:
    return f"{row.n_completed} / {row.n_diverged}"


def differences(frame: pd.DataFrame, response: str, factor: str, other, reference, within: str, scope=None):
    """Paired differences other - reference, one per (within, seed) key, optionally for one level of `within`."""
    data = frame if scope is None else frame[frame[within] == scope]
    wide = data.pivot_table(index=[within, "seed"], columns=factor, values=response, aggfunc="mean")
    if other not in wide or reference not in wide:
        return np.array([])
    d = (wide[other] - wide[reference]).to_numpy(dtype=float)
    return d[np.isfinite(d)]


def mde_of(diffs: np.ndarray, alpha: float) -> float | None:
    if len(diffs) < 2:
        return None
    return stats.minimum_detectable_effect(float(np.std(diffs, ddof=1)), len(diffs), alpha, POWER)


def parse_label(label: str) -> tuple[str, str, str | None]:
    """'other - reference | scope' (stats.pairwise_init_effects' labels) -> (other, reference, scope)."""
    pair, _, scope = label.partition(" | ")
    other, _, reference = pair.partition(" - ")
    return other, reference, scope or None


def factor_effects(frame: pd.DataFrame, response: str, factor: str, confidence: float, higher_is_better: bool = True):
    """Each level of `factor` against the best level, paired on (the other factor, seed): stats.pairwise_init_effects
    with the roles of init and optimizer swapped when `factor` is the optimizer."""
    within = "optimizer" if factor == "init" else "init"
    return stats.pairwise_init_effects(
        frame, response, confidence, init=factor, optimizer=within, higher_is_better=higher_is_better
    )


def described(frame, response, factor, comparison, family_size, confidence, unit="pp", scale=100.0, digits=2) -> str:
    """stats.describe with the comparison's own minimum detectable effect (Holm's worst case in its family)."""
    within = "optimizer" if factor == "init" else "init"
    other, reference, scope = parse_label(comparison.label)
    diffs = differences(frame, response, factor, other, reference, within, scope)
    mde = mde_of(diffs, stats.alpha_of(confidence) / max(family_size, 1))
    return stats.describe(comparison, unit=unit, scale=scale, mde=mde, digits=digits)


# ---------------------------------------------------------------------------------------------- the answer


def anova_note(anova: stats.AnovaResult, factor: str, confidence: float, any_detected: bool) -> str:
    """The factorial F-test of a main effect, quoted where it disagrees with the exact paired tests' verdict."""
    if not anova.testable:
        return ""
    table = anova.table.set_index("source")
    if factor not in table.index or not math.isfinite(table.at[factor, "p"]):
        return ""
    p = float(table.at[factor, "p"])
    if (p < stats.alpha_of(confidence)) == any_detected:
        return ""
    side = (
        "the exact paired tests above need more seeds to confirm it"
        if not any_detected
        else "the exact paired tests still detect the difference named above"
    )
    return (
        f" (The factorial F-test, which assumes normal errors, gives {p_is(p)} for the {factor} main effect; {side}.)"
    )


def init_answer(
    frame: pd.DataFrame, anova: stats.AnovaResult, confidence: float
) -> tuple[str, stats.InitEffects | None]:
    inits = unique(frame["init"])
    if len(inits) < 2:
        return (
            f"**Which init?** Untestable: only one init ({inits[0]}) was trained; name a second in `grid.inits`.",
            None,
        )
    effects = factor_effects(frame, ACCURACY, "init", confidence)
    if effects.reference is None:
        return f"**Which init?** Untestable: {effects.status} (the other inits have no completed run).", None
    best = effects.reference
    parts, better_than, undetected = [], [], []
    for comparison in effects.pooled:
        other, _, _ = parse_label(comparison.label)
        text = described(frame, ACCURACY, "init", comparison, len(effects.pooled), confidence)
        diffs = differences(frame, ACCURACY, "init", other, best, "optimizer")
        ahead = (
            f"; {best} ahead in {int((diffs < 0).sum())} of {len(diffs)} (optimizer, seed) pairs" if len(diffs) else ""
        )
        parts.append(f"{comparison.label}: {text}{ahead}")
        if comparison.verdict == "different" and comparison.estimate < 0:
            better_than.append(other)
        elif comparison.verdict != "different":
            undetected.append(other)
    missing = [i for i in inits if i != best and not any(parse_label(c.label)[0] == i for c in effects.pooled)]
    lead = f"Averaged over the optimizers, **{best}** had the highest mean final test accuracy"
    if better_than:
        lead += f" and is better than {names(better_than)}"
    if undetected:
        lead += f"; no difference from {names(undetected)} was detected"
    missing_text = f" {names(missing)}: no completed run with a test accuracy, not compared." if missing else ""
    note = anova_note(anova, "init", confidence, bool(better_than))
    return f"**Which init?** {lead}. " + "; ".join(parts) + "." + missing_text + note, effects


def interaction_answer(frame: pd.DataFrame, anova: stats.AnovaResult, effects, confidence: float) -> str:
    head = "**Does the best init depend on the optimizer?**"
    if frame["init"].nunique() < 2 or frame["optimizer"].nunique() < 2:
        one = "init" if frame["init"].nunique() < 2 else "optimizer"
        return f"{head} Untestable: only one {one} was trained."
    if anova.interaction_p is None:
        return f"{head} Untestable: the init × optimizer interaction could not be estimated ({anova.status})."
    alpha = stats.alpha_of(confidence)
    leaders = best_init_per_optimizer(frame)
    detected = [c for c in (effects.per_optimizer if effects else ()) if c.verdict == "different"]
    where = (
        "; per optimizer (Holm over all optimizers) the init difference is detected for "
        + ", ".join(
            f"{parse_label(c.label)[2]} ({c.label.split(' | ')[0]} {percent_points(c.estimate)})" for c in detected
        )
        if detected
        else "; per optimizer (Holm over all optimizers) no init difference is detected on its own"
    )
    if anova.interaction_p < alpha:
        winners = {winner for winner, _ in leaders.values()}
        what = (
            f"the same init leads for every optimizer ({next(iter(winners))}); what depends on the optimizer is "
            "the size of its lead"
            if len(winners) == 1
            else "the init effect differs between optimizers"
        )
        per = ", ".join(f"{o}: {w} ({lead})" for o, (w, lead) in leaders.items())
        return (
            f"{head} **Yes**: init × optimizer interaction {p_is(anova.interaction_p)}, below alpha {alpha:g}: {what}. "
            f"Highest mean per optimizer (lead over the next init): {per}{where}."
        )
    return (
        f"{head} No dependence detected: init × optimizer interaction {p_is(anova.interaction_p)} "
        f"(alpha {alpha:g}), so the overall init answer is the best estimate for every optimizer tested{where}."
    )


def best_init_per_optimizer(frame: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """Per optimizer, the init with the highest mean final test accuracy and its lead over the next one."""
    leaders = {}
    cells = frame.groupby(["optimizer", "init"], sort=False)[ACCURACY].mean().dropna()
    for optimizer, means in cells.groupby(level=0, sort=False):
        means = means.droplevel(0).sort_values(ascending=False)
        if len(means) < 2:
            continue
        lead = float(means.iloc[0] - means.iloc[1])
        tied = means.index[np.isclose(means.to_numpy(), means.iloc[0], rtol=0, atol=1e-12)]
        winner = " = ".join(tied) if len(tied) > 1 else means.index[0]
        leaders[optimizer] = (winner, "tie" if len(tied) > 1 else f"+{percent_points(lead)}")
    return leaders


def optimizer_answer(frame: pd.DataFrame, anova: stats.AnovaResult, confidence: float) -> str:
    head = "**Which optimizers can be told apart?**"
    optimizers = unique(frame["optimizer"])
    if len(optimizers) < 2:
        return f"{head} Untestable: only one optimizer ({optimizers[0]}) was trained."
    effects = factor_effects(frame, ACCURACY, "optimizer", confidence)
    if effects.reference is None:
        return f"{head} Untestable: {effects.status}."
    best = effects.reference
    apart, together, parts = [], [], []
    for comparison in effects.pooled:
        other = parse_label(comparison.label)[0]
        text = described(frame, ACCURACY, "optimizer", comparison, len(effects.pooled), confidence)
        parts.append(f"{comparison.label}: {text}")
        (apart if comparison.verdict == "different" and comparison.estimate < 0 else together).append(other)
    missing = [o for o in optimizers if o != best and o not in apart + together]
    verdict = f"**{best}** had the highest mean final test accuracy (averaged over the inits)"
    if apart:
        verdict += f"; it is better than {names(apart)}"
    if together:
        verdict += f"; {names(together)} cannot be told apart from it"
    missing_text = f" {names(missing)}: no completed run, not compared." if missing else ""
    note = anova_note(anova, "optimizer", confidence, bool(apart))
    return f"{head} {verdict}. " + "; ".join(parts) + "." + missing_text + note


def sensitivity_answer(frame: pd.DataFrame, effects, confidence: float) -> str:
    """The init effect's minimum detectable effect for the study as run, and the seeds a 0.3 pp MDE needs."""
    head = "**How small an init effect could this study see?**"
    if effects is None or not effects.pooled:
        return f"{head} Not estimable: there is no init comparison."
    alpha = stats.alpha_of(confidence) / len(effects.pooled)  # Holm's worst case within the family
    spreads, counts = [], []
    for comparison in effects.pooled:
        other, reference, _ = parse_label(comparison.label)
        diffs = differences(frame, ACCURACY, "init", other, reference, "optimizer")
        if len(diffs) >= 2:
            spreads.append(float(np.var(diffs, ddof=1)))
            counts.append(len(diffs))
    if not counts:
        return f"{head} Not estimable: fewer than two complete (optimizer, seed) pairs."
    sd, pairs = math.sqrt(float(np.mean(spreads))), min(counts)
    mde = stats.minimum_detectable_effect(sd, pairs, alpha, POWER)
    seeds = frame["seed"].nunique()
    pairs_per_seed = max(1, round(pairs / seeds))
    needed = stats.seeds_for_mde(sd, pairs_per_seed, MDE_GOAL, alpha, POWER)
    if mde is None:
        return f"{head} Not estimable: the paired differences do not vary (sd {percent_points(sd)} over {pairs} pairs)."
    if math.isinf(mde):
        seen = (
            f"with {pairs} (optimizer, seed) pairs the exact test cannot reach p < {alpha:g}, so no init effect, however "
            "large, is detectable"
        )
    else:
        seen = (
            f"the minimum detectable init effect (MDE, {POWER:.0%} power, alpha {alpha:g}) is {percent_points(mde)} "
            f"final test accuracy, from the sd of the paired differences ({percent_points(sd)}) over {pairs} "
            f"(optimizer, seed) pairs"
        )
    goal = percent_points(MDE_GOAL, 1)
    if needed is None:
        more = f"more than 100 seeds would be needed for an MDE of {goal}"
    elif needed <= seeds:
        more = f"the study's {seeds} seeds already reach an MDE of {goal}"
    else:
        more = f"{needed} seeds (now {seeds}) would bring it to {goal} or less"
    return f"{head} With {seeds} seed{'s' * (seeds != 1)}, {seen}; {more}."


def factorial_table(anova: stats.AnovaResult) -> str:
    caption = "Final test accuracy, two-way ANOVA (OLS, Type II sums of squares): init × optimizer with seed as block."
    if not anova.testable:
        return f"{caption} {anova.status[0].upper()}{anova.status[1:]}."
    rows = [
        {
            "source": row.source,
            "df": f"{row.df:g}",
            "F": number(row.F, 2),
            "p": p_text(row.p),
        }
        for row in anova.table.itertuples(index=False)
    ]
    note = "" if anova.status == "ok" else f"\n\nNote: {anova.status}."
    return f"{caption}\n\n{markdown_table(rows)}{note}"


def holm_floor_note(comparisons) -> str:
    """Why a family could not exclude anything: the exact test's smallest p, times Holm's factor, is >= alpha."""
    testable = [c for c in comparisons if c.verdict != "untestable" and isinstance(c.n, int)]
    if not testable or len(testable) < len(comparisons):
        return ""
    alpha, family = testable[0].alpha, len(testable)
    floor = min(2.0 / 2.0**c.n for c in testable) * family
    if floor < alpha or family < 2:
        return ""
    pairs = min(c.n for c in testable)
    return (
        f" (with {pairs} paired seeds and {family} comparisons, Holm's smallest possible adjusted p is "
        f"{min(floor, 1.0):.2g} ≥ {alpha:g}: no combination could be excluded, however large its gap; more seeds "
        "would sharpen the set)"
    )


def best_set_answer(best: stats.BestSet, eligible_note: str) -> str:
    head = "**Best combinations**"
    if best.best is None:
        return f"{head}: none: {best.status}."
    members = best.members[best.members["in_set"]].sort_values("select_mean", ascending=False)
    listed = ", ".join(
        f"**{combination_label(m.init, m.optimizer)}** (test {number(m.report_mean)})"
        for m in members.itertuples(index=False)
    )
    size = len(best.members[best.members["n_runs"] > best.members["n_dropped"]])
    if size == 1:
        return f"{head}: only one eligible combination, {listed}.{eligible_note}"
    status = holm_floor_note(best.comparisons) if best.status == "ok" else f" ({best.status})"
    return (
        f"{head} (selected on final validation accuracy, reported on test accuracy): {listed}: "
        f"{len(members)} of {size} eligible combination{'s' * (size != 1)} cannot be told apart from the best"
        f"{status}.{eligible_note}"
    )


# ---------------------------------------------------------------------------------------------- best as a set


def select_best(frame: pd.DataFrame, confidence: float) -> tuple[stats.BestSet, pd.DataFrame, str]:
    """stats.best_set on final validation accuracy among combinations whose every seed completed: a combination
    that lost seeds to divergence would be ranked on its survivors only, so it is listed but cannot be best.
    When every combination lost seeds, all are ranked on their survivors, and the report says so."""
    counts = combination_counts(frame)
    complete = counts[(counts["n_completed"] == counts["n_seeds"]) & (counts["n_completed"] > 0)]
    keys = frame.set_index(["init", "optimizer"]).index
    eligible_keys = pd.MultiIndex.from_frame(complete[["init", "optimizer"]])
    if len(complete) == 0:
        pool, note = (
            frame,
            (
                " No combination completed every seed, so all are ranked on their completed seeds only."
                if (counts["n_completed"] > 0).any()
                else ""
            ),
        )
    else:
        pool, note = frame[keys.isin(eligible_keys)], ""
        lost = counts[(counts["n_completed"] < counts["n_seeds"])]
        if len(lost):
            listed = ", ".join(
                f"{combination_label(r.init, r.optimizer)} ({r.n_seeds - r.n_completed} of {r.n_seeds} seeds lost)"
                for r in lost.itertuples(index=False)
            )
            note = f" Not eligible, because seeds diverged: {listed}."
    result = stats.best_set(pool, SELECTION, ACCURACY, ["init", "optimizer"], confidence)
    return result, counts, note


def ranking_table(frame: pd.DataFrame, best: stats.BestSet, counts: pd.DataFrame, confidence: float) -> str:
    comparisons = {c.label: c for c in best.comparisons}
    best_name = "/".join(map(str, best.best)) if best.best else None
    in_set = {(m.init, m.optimizer): bool(m.in_set) for m in best.members.itertuples(index=False)}
    means = frame.groupby(["init", "optimizer"], sort=False)[SELECTION].mean()
    order = counts.assign(
        eligible=[(r.init, r.optimizer) in in_set for r in counts.itertuples(index=False)],
        is_best=[f"{r.init}/{r.optimizer}" == best_name for r in counts.itertuples(index=False)],
        select=[means.get((r.init, r.optimizer), math.nan) for r in counts.itertuples(index=False)],
    ).sort_values(["eligible", "is_best", "select"], ascending=[False, False, False], kind="stable", na_position="last")
    rows = []
    for rank, row in enumerate(order.itertuples(index=False), start=1):
        key = (row.init, row.optimizer)
        rank = str(rank) if row.eligible else "–"
        runs = frame[(frame["init"] == row.init) & (frame["optimizer"] == row.optimizer)]
        name = f"{row.init}/{row.optimizer}"
        if row.n_completed == 0:
            versus, member = "no completed run", "no"
        elif not row.eligible:
            versus, member = f"not eligible: {row.n_seeds - row.n_completed} of {row.n_seeds} seeds diverged", "no"
        elif name == best_name:
            versus, member = "best (highest mean)", "yes"
        else:
            comparison = comparisons.get(f"{name} - {best_name}")
            versus = stats.describe(comparison) if comparison else "n/a"
            member = "yes" if in_set.get(key) else "no"
        rows.append(
            {
                "rank": rank,
                "init + optimizer": combination_label(*key),
                "final validation accuracy (selects)": accuracy_with_interval(runs[SELECTION], confidence),
                "final test accuracy (reports)": accuracy_with_interval(runs[ACCURACY], confidence),
                "seeds completed / diverged": seeds_text(row),
                "validation vs the best (paired, Holm)": versus,
                "in the best set": member,
            }
        )
    return markdown_table(rows)


# ---------------------------------------------------------------------------------------------- tables


def epochs_to_target_text(runs: pd.DataFrame) -> str:
    """Median epochs to target with never-reached runs counted as censored, and how many seeds reached it."""
    if runs.empty:
        return "n/a"
    censored = runs["epochs_to_target_censored"].to_numpy(dtype=float)
    epochs = int(runs["epochs"].max())
    reached = int(runs["reached_target"].sum())
    median = float(np.median(censored))
    middle = f"median {median:g}" if median <= epochs else f"median > {epochs}"
    return f"{middle} (reached {reached}/{len(runs)})" if reached else f"never reached (0/{len(runs)})"


def summary_table(frame: pd.DataFrame, counts: pd.DataFrame, confidence: float) -> str:
    measured_cpu = frame["process_cpu_seconds"].notna().any() if "process_cpu_seconds" in frame else False
    rows = []
    for row in counts.itertuples(index=False):
        runs = frame[(frame["init"] == row.init) & (frame["optimizer"] == row.optimizer)]
        entry = {
            "init + optimizer": combination_label(row.init, row.optimizer),
            "seeds completed / diverged": seeds_text(row),
            "final test accuracy": accuracy_with_interval(runs[ACCURACY], confidence),
            "final validation accuracy": accuracy_with_interval(runs[SELECTION], confidence),
            "mean validation accuracy over epochs": accuracy_with_interval(runs["mean_val_accuracy"], confidence),
            "epoch-1 validation accuracy": accuracy_with_interval(runs["epoch1_val_accuracy"], confidence),
            "epochs to target": epochs_to_target_text(runs),
        }
        if measured_cpu:
            completed = runs[runs["status"] == "completed"]
            entry["process CPU time (s, not a cost ranking)"] = mean_with_interval(
                completed["process_cpu_seconds"], confidence, 1, limits=(0.0, math.inf)
            )
        rows.append(entry)
    return markdown_table(rows)


def comparison_rows(frame, response, factor, effects, confidence, unit="pp", scale=100.0, label=None) -> list[dict]:
    """One row per comparison: pooled over the other factor (one Holm family), then per level (one family)."""
    rows = []
    within = "optimizer" if factor == "init" else "init"
    for family, scope_of in ((effects.pooled, lambda c: f"all {within}s"), (effects.per_optimizer, None)):
        for comparison in family:
            other, reference, scope = parse_label(comparison.label)
            text = described(frame, response, factor, comparison, len(family), confidence, unit, scale)
            rows.append(
                {
                    **({"measure": label} if label else {}),
                    within: scope_of(comparison) if scope_of else scope,
                    "difference": f"{other} − {reference}",
                    RESULT: text,
                }
            )
    return rows


def init_section(frame: pd.DataFrame, confidence: float) -> str:
    parts = ["## Initialisation × optimizer"]
    if frame["init"].nunique() < 2:
        parts.append("Only one init was trained, so no init comparison is possible.")
    else:
        effects = factor_effects(frame, ACCURACY, "init", confidence)
        if effects.reference is None:
            parts.append(f"No init comparison: {effects.status}.")
        else:
            parts.append(
                f"Final test accuracy, each init against the best-mean init ({effects.reference}), paired on "
                "(optimizer, seed): first over all optimizers (one Holm family), then within each optimizer (one "
                "family across all optimizers). The MDE is the smallest true difference the comparison would "
                f"detect with {POWER:.0%} power."
            )
            parts.append(markdown_table(comparison_rows(frame, ACCURACY, "init", effects, confidence)))
    if frame["optimizer"].nunique() >= 2:
        effects = factor_effects(frame, ACCURACY, "optimizer", confidence)
        if effects.reference is not None:
            parts.append(
                f"Each optimizer against the best-mean optimizer ({effects.reference}), paired on (init, seed)."
            )
            parts.append(markdown_table(comparison_rows(frame, ACCURACY, "optimizer", effects, confidence)))
    return "\n\n".join(parts)


# ---------------------------------------------------------------------------------------------- speed


def target_warning(frame: pd.DataFrame, all_metrics: list[dict], target: float) -> str:
    """A warning when epochs-to-target cannot discriminate: most runs reach it in epoch 1, or none reaches it."""
    runs, epochs = len(frame), int(frame["epochs"].max())
    reached = int(frame["reached_target"].sum())
    first = int((frame["epochs_to_target"] == 1).sum())
    completed = [m for m in all_metrics if m["status"] == "completed" and m["history"]["val_accuracy"]]
    if reached == 0:
        if not completed:
            return ""
        best = max(max(m["history"]["val_accuracy"]) for m in completed)
        return (
            f"**Warning: the target does not discriminate: no run reached validation accuracy {target:g}** within "
            f"{epochs} epochs (the highest reached was {best:.4f}). Lower `report.target_accuracy` (or train more "
            "`training.epochs`), so that epochs to target can compare the combinations."
        )
    if first * 2 > runs:
        if epochs < 2:
            advice = "with one epoch, epochs to target can only be 1 or never: train more `training.epochs`"
        else:
            middle = math.ceil(epochs / 2)
            halfway = [m["history"]["val_accuracy"][middle - 1] for m in completed]
            advice = "raise `report.target_accuracy`" + (
                f", e.g. to about {math.floor(float(np.median(halfway)) * 200) / 200:g} (the median validation "
                f"accuracy after epoch {middle}, which half the runs reach by mid-training)"
                if halfway
                else ""
            )
        return (
            f"**Warning: the target does not discriminate: {first} of {runs} runs reached validation accuracy "
            f"{target:g} in epoch 1**, so epochs to target ties almost everything; {advice}. The mean validation "
            "accuracy over epochs and the epoch-1 validation accuracy below still compare the speed."
        )
    return ""


def speed_section(frame: pd.DataFrame, all_metrics: list[dict], target: float, confidence: float) -> str:
    epochs = int(frame["epochs"].max())
    parts = [
        "## Convergence speed",
        "Primary measures: the **mean validation accuracy over the epochs** (the area under the validation curve "
        "divided by the epochs: higher is faster and better on the way) and the **epoch-1 validation accuracy**. "
        f"Epochs to the target {target:g} is kept, with runs that never reached it counted as censored "
        f"(never = {epochs + 1} epochs), not dropped: the permutation test is exact under the null whatever value "
        "never gets, but the estimate understates a difference that involves censored runs.",
    ]
    warning = target_warning(frame, all_metrics, target)
    if warning:
        parts.append(warning)
    fastest = stats.best_set(frame, "mean_val_accuracy", "mean_val_accuracy", ["init", "optimizer"], confidence)
    if fastest.best is not None:
        members = fastest.members[fastest.members["in_set"]].sort_values("select_mean", ascending=False)
        status = "" if fastest.status == "ok" else f" ({fastest.status})"
        parts.append(
            "**Fastest combinations** (highest mean validation accuracy over epochs, and every combination not "
            "distinguishable from it): "
            + ", ".join(
                f"**{combination_label(m.init, m.optimizer)}** ({number(m.select_mean)}"
                + (f"; lost {m.n_dropped} of {m.n_runs} seeds, mean of the rest" if m.n_dropped else "")
                + ")"
                for m in members.itertuples(index=False)
            )
            + f"{status}."
        )
    if frame["init"].nunique() < 2:
        parts.append("Only one init was trained, so no init comparison of speed is possible.")
        return "\n\n".join(parts)
    rows = []
    for metric, (label, higher_is_better) in SPEED.items():
        effects = factor_effects(frame, metric, "init", confidence, higher_is_better)
        if effects.reference is None:
            rows.append({"measure": label, "optimizer": "", "difference": "", RESULT: f"untestable: {effects.status}"})
            continue
        unit, scale = ("epochs", 1.0) if metric.startswith("epochs") else ("pp", 100.0)
        rows += comparison_rows(frame, metric, "init", effects, confidence, unit, scale, label)
    parts.append(
        "Init differences in speed, paired on (optimizer, seed); per measure, one Holm family over all optimizers "
        "and one for the per-optimizer comparisons:"
    )
    parts.append(markdown_table(rows))
    return "\n\n".join(parts)


# ---------------------------------------------------------------------------------------------- cost


def placebo_spread(step_costs: pd.DataFrame) -> float | None:
    """Largest relative difference in per-step cost between inits of one optimizer. Init changes only the
    starting weights, never the arithmetic of a step, so any such difference is measurement noise."""
    spreads = [
        (group.max() - group.min()) / group.mean()
        for _, group in step_costs.groupby("optimizer")["median_step_seconds"]
        if len(group) >= 2 and group.mean() > 0
    ]
    return max(spreads) if spreads else None


def cost_section(frame: pd.DataFrame, counts: pd.DataFrame, step_costs: pd.DataFrame | None) -> str:
    parts = ["## Cost"]
    if step_costs is None or step_costs.empty:
        parts.append(
            "**Cost was not measured in isolation** (no per-step cost table), so no cost ranking is given: the runs' "
            "own times depend on what else shared the machine."
        )
    else:
        parts += isolated_cost(frame, counts, step_costs)
    parts.append(run_cost_conditions(frame))
    return "\n\n".join(parts)


def isolated_cost(frame: pd.DataFrame, counts: pd.DataFrame, step_costs: pd.DataFrame) -> list[str]:
    costs = step_costs.dropna(subset=["median_step_seconds"])
    per_optimizer = costs.groupby("optimizer", sort=False)["median_step_seconds"].mean().sort_values()
    noise = placebo_spread(costs)
    machine = ", ".join(map(str, unique(costs["cpu_model"]))) if "cpu_model" in costs else "unknown"
    repeats = ", ".join(map(str, unique(costs["repeats"]))) if "repeats" in costs else "unknown"
    parts = [
        f"Per-step cost measured in isolation, interleaved in one process ({repeats} repeats; {machine}). Efficiency "
        "is work to target (epochs to target × steps per epoch) × that per-step cost, never the wall time of runs "
        "that shared the machine."
    ]
    cheapest = per_optimizer.iloc[0] if len(per_optimizer) else math.nan
    relative = (per_optimizer - cheapest) / cheapest if cheapest > 0 else per_optimizer * math.nan
    rows = []
    for optimizer, cost in per_optimizer.items():
        by_init = costs[costs["optimizer"] == optimizer]
        rows.append(
            {
                "optimizer": optimizer,
                "per-step cost (ms, mean over inits)": number(cost * 1000, 3),
                "per init (ms)": ", ".join(
                    f"{r.init}: {number(r.median_step_seconds * 1000, 3)}" for r in by_init.itertuples()
                ),
                "vs cheapest": f"{relative[optimizer]:+.1%}" if math.isfinite(relative[optimizer]) else "n/a",
            }
        )
    parts.append(markdown_table(rows))
    largest = float(relative.max()) if len(relative) else 0.0
    rankable = False
    if noise is None:
        parts.append(
            "**No placebo**: every optimizer was measured with one init only, so the measurement noise is unknown "
            "and the costs above cannot be ranked."
        )
    elif len(per_optimizer) < 2:
        parts.append(
            f"Placebo check: init, which cannot change the arithmetic of a step, moved the per-step cost by up to "
            f"{noise:.1%}. Only one optimizer was measured, so there is no cost ranking."
        )
    elif noise >= largest:
        parts.append(
            f"**Placebo check failed: measurement noise is too large to rank costs.** Init, which cannot change "
            f"the arithmetic of a step, moved the per-step cost by up to {noise:.1%}, at least as much as any "
            f"difference between optimizers ({largest:.1%})."
        )
    else:
        apart = [o for o in per_optimizer.index[1:] if relative[o] > noise]
        parts.append(
            f"Placebo check: init, which cannot change the arithmetic of a step, moved the per-step cost by at most "
            f"{noise:.1%} (measurement noise); optimizers whose cost differs from the cheapest "
            f"({per_optimizer.index[0]}) by more than that: "
            + (", ".join(f"{o} ({relative[o]:+.1%})" for o in apart) if apart else "none")
            + "."
        )
        rankable = True
    rows = []
    for row in counts.itertuples(index=False):
        runs = frame[(frame["init"] == row.init) & (frame["optimizer"] == row.optimizer)]
        censored = runs["epochs_to_target_censored"].to_numpy(dtype=float)
        epochs = int(runs["epochs"].max())
        median = float(np.median(censored)) if len(censored) else math.nan
        steps = median * float(runs["steps_per_epoch"].iloc[0]) if median <= epochs else math.nan
        cost = per_optimizer.get(row.optimizer, math.nan)
        rows.append(
            {
                "init + optimizer": combination_label(row.init, row.optimizer),
                "seeds completed / diverged": seeds_text(row),
                "epochs to target": epochs_to_target_text(runs),
                "steps to target (median)": "n/a" if math.isnan(steps) else f"{steps:,.0f}",
                "compute to target (s, isolated)": "n/a" if not math.isfinite(steps * cost) else f"{steps * cost:.3g}",
                "_compute": steps * cost,
            }
        )
    finite = [r for r in rows if math.isfinite(r["_compute"])]
    parts.append(markdown_table([{k: v for k, v in r.items() if k != "_compute"} for r in rows]))
    if rankable and finite:
        least = min(r["_compute"] for r in finite)
        tied = [r for r in finite if math.isclose(r["_compute"], least, rel_tol=1e-9)]
        parts.append(
            f"Least compute to the target (median epochs × steps × per-step cost): "
            f"{names(r['init + optimizer'] for r in tied)} ({tied[0]['compute to target (s, isolated)']} s). Epochs "
            "to target counts whole epochs, so ties and one-epoch differences are common: the speed section tests them."
        )
    elif not finite:
        parts.append("No combination reached the target in most seeds, so compute to target is not available.")
    return parts


def run_cost_conditions(frame: pd.DataFrame) -> str:
    """What the runs recorded about their own cost, and the load they ran under: described, never ranked."""
    recorded = frame["process_cpu_seconds"].notna() if "process_cpu_seconds" in frame else pd.Series(False)
    if not recorded.any():
        return (
            "The runs did not record their own cost (metrics.json without a `cost` block). Wall-clock training "
            "times of runs that may have run side by side measure the scheduler, not the method, so none is ranked."
        )
    runs = frame[recorded]
    loads = pd.concat([runs["load_average_start"], runs["load_average_end"]]).dropna()
    cpus = ", ".join(f"{int(c)}" for c in unique(runs["cpu_count"].dropna()))
    threads = ", ".join(f"{int(t)}" for t in unique(runs["cost_threads"].dropna()))
    load = (
        f"under 1-minute load averages from {loads.min():.2f} to {loads.max():.2f} on {cpus or 'unknown'} CPUs"
        if len(loads)
        else "under an unrecorded load"
    )
    busy = (
        " (more runnable processes than CPUs at times: the runs competed for cores)"
        if len(loads) and runs["cpu_count"].notna().any() and loads.max() > runs["cpu_count"].min()
        else ""
    )
    return (
        f"{recorded.sum()} of {len(frame)} runs recorded their process CPU time (summary table) and ran {load}"
        f"{busy}, with {threads or 'an unknown number of'} thread{'' if threads == '1' else 's'} each. CPU time and wall time of runs that shared the "
        "machine describe the conditions, not the methods: no verdict is drawn from them."
    )


# ---------------------------------------------------------------------------------------------- problems


def problems(frame: pd.DataFrame, counts: pd.DataFrame, best: stats.BestSet, target: float) -> list[str]:
    lines = []
    for optimizer, runs in frame.groupby("optimizer", sort=False):
        if (runs["status"] == "diverged").all():
            lines.append(
                f"- **Every run of {optimizer} diverged** ({len(runs)} runs): it has no accuracy or speed to report."
            )
    all_diverged = {o for o, runs in frame.groupby("optimizer") if (runs["status"] == "diverged").all()}
    for row in counts.itertuples(index=False):
        if row.n_completed == 0 and row.optimizer not in all_diverged:
            lines.append(
                f"- **{combination_label(row.init, row.optimizer)}**: no completed run ({row.n_diverged} of "
                f"{row.n_seeds} seeds diverged): no accuracy or speed to report."
            )
    for run in frame[frame["status"] == "diverged"].itertuples(index=False):
        where = (
            f"epoch {int(run.diverged_epoch)}, step {int(run.diverged_step)}"
            if math.isfinite(run.diverged_epoch) and math.isfinite(run.diverged_step)
            else "an unrecorded step"
        )
        lines.append(
            f"- **{run.run_id} diverged** (loss not finite at {where}, after {int(run.epochs_completed)} completed "
            f"epoch{'s' * (run.epochs_completed != 1)}, learning rate {run.lr:g}); left out of every mean and comparison except epochs to target "
            f"(counted as never reached). Suggested fix: lower `optimizers.{run.optimizer}.kwargs.lr` by "
            f"{SUGGESTED_LR_FACTOR}x, to {run.lr / SUGGESTED_LR_FACTOR:g}."
        )
    completed = frame[frame["status"] == "completed"]
    if len(completed) and not frame["reached_target"].any():
        lines.append(f"- **No run reached validation accuracy {target:g}**: see the warning under Convergence speed.")
    elif len(completed):
        for (init, optimizer), runs in completed.groupby(["init", "optimizer"], sort=False):
            missed = runs[~runs["reached_target"]]
            if len(missed):
                lines.append(
                    f"- **{combination_label(init, optimizer)}**: {len(missed)} of {len(runs)} completed seeds never "
                    f"reached validation accuracy {target:g} within {int(runs['epochs'].max())} epochs (best: "
                    f"{number(runs['best_val_accuracy'].max())}). Suggested fix: more epochs (`training.epochs`) or "
                    f"a tuned `optimizers.{optimizer}.kwargs.lr` (now {runs['lr'].iloc[0]:g})."
                )
    if best.best is not None:
        best_name = "/".join(map(str, best.best))
        for comparison in best.comparisons:
            if comparison.verdict == "different" and comparison.estimate < 0:
                worse = comparison.label.split(" - ")[0].replace("/", " + ")
                lines.append(
                    f"- **{worse}** is worse than the best (**{best_name.replace('/', ' + ')}**) in final validation "
                    f"accuracy: {stats.describe(comparison)}."
                )
    return lines or [
        "- None: no run diverged, every completed run reached the target, and no eligible combination is "
        "distinguishable from the best in final validation accuracy."
    ]


# ---------------------------------------------------------------------------------------------- methods


def _one_or_all(values: list) -> str:
    items = unique(values)
    return str(items[0]) if len(items) == 1 else " / ".join(map(str, items)) + " (differs between runs)"


def methods(all_metrics: list[dict], target_accuracy: float, confidence: float) -> str:
    data = [m["data"] for m in all_metrics]
    env = [m["environment"] for m in all_metrics]
    spec = [m["spec"] for m in all_metrics]
    sizes = _one_or_all(
        [
            f"{d['train']:,} training, {d['validation']:,} validation ({d['validation_source']}), {d['test']:,} test images"
            for d in data
        ]
    )
    seeds = sorted({m["run"]["seed"] for m in all_metrics})
    epoch_seconds = [s for m in all_metrics for s in m["history"]["epoch_seconds"]]
    design = (
        f"Each (init, optimizer) combination was trained once per seed ({', '.join(map(str, seeds))}; "
        f"{len(all_metrics)} runs) on {sizes}, for {_one_or_all([s['epochs'] for s in spec])} epochs with batch size "
        f"{_one_or_all([s['batch_size'] for s in spec])}. The seed sets both the initial weights and the data order, "
        "so runs of different inits with the same optimizer and seed form a pair. Validation accuracy was measured "
        "after every epoch and test accuracy once, after the last epoch."
    )
    statistics = (
        f"{stats.decision_rule_text(confidence)} The headline's factorial table is an OLS two-way ANOVA of final "
        "test accuracy (init × optimizer, seed as block, Type II sums of squares); its interaction F-test, at the "
        "same alpha, is the only test of whether the best init depends on the optimizer. The minimum detectable "
        f"effect (MDE) is the true mean paired difference a comparison would detect with {POWER:.0%} power at "
        "Holm's worst-case alpha in its family (noncentral t, from the sd of the observed paired differences). "
        '"Best" is a set: combinations are selected on final validation accuracy, each compared with the '
        "highest-mean one (paired on seed, Holm), and reported on test accuracy, which played no part in the "
        "choice; a combination that lost seeds to divergence cannot be best. Per-combination intervals in the "
        f"tables are {confidence:.0%} Student-t intervals of the mean over completed seeds; they describe one "
        "combination and decide nothing. Diverged runs are listed and left out of every mean and comparison, "
        f"except epochs to the target {target_accuracy:g}, where a run that never reached it counts as epochs + 1."
    )
    environment = (
        f"Runs used {_one_or_all([device_of(e) for e in env])} with "
        f"{_one_or_all([e['threads'] for e in env])} threads on host {_one_or_all([e['host'] for e in env])}; "
        f"Python {_one_or_all([e['python'] for e in env])}, PyTorch {_one_or_all([e['torch'] for e in env])}, "
        f"torchvision {_one_or_all([e['torchvision'] for e in env])}, Snakemake {_one_or_all([e['snakemake'] for e in env])}; "
        f"code at git commit {_one_or_all([e['git_commit'] or 'unknown' for e in env])}. "
        + (
            f"One epoch (the same images in every run) took between {min(epoch_seconds):.1f} and "
            f"{max(epoch_seconds):.1f} s of wall time across runs, depending on what else the machine was doing."
            if epoch_seconds
            else ""
        )
    )
    if any(d["validation_source"] == "test" for d in data):
        statistics += (
            " Here the validation set is the test set (`validation.source: test`), so the same images select and "
            "score the best: its test accuracy is optimistic."
        )
    return "\n\n".join([design, statistics, environment, hyperparameter_table(all_metrics)])


def device_of(environment: dict[str, Any]) -> str:
    return f"{environment['device']} ({environment['device_name']})"


def hyperparameter_table(all_metrics: list[dict]) -> str:
    """Inits as requested and optimizer settings as read back from the optimizer after training."""
    rows = []
    for kind, key in (("init", "init"), ("optimizer", "optimizer")):
        for name in unique(m["run"][key] for m in all_metrics):
            runs = [m for m in all_metrics if m["run"][key] == name]
            if kind == "init":
                setting = [f"{m['spec']['init_function']}({_kwargs(m['spec']['init_kwargs'])})" for m in runs]
            else:
                setting = [f"{m['spec']['optimizer_class']}({_kwargs(_numeric(m['hyperparameters']))})" for m in runs]
            rows.append({"kind": kind, "name": name, "as used": _one_or_all(setting)})
    return markdown_table(rows)


def _numeric(hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """The numeric settings (lr, momentum, betas, ...); the implementation switches (foreach, fused, ...) are noise here."""
    return {
        key: value
        for key, value in hyperparameters.items()
        if (isinstance(value, (int, float)) and not isinstance(value, bool))
        or (isinstance(value, list) and all(isinstance(v, (int, float)) for v in value))
    }


def _kwargs(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{key}={json.dumps(value)}" for key, value in kwargs.items())


def relative(path: str | Path, start: str | Path) -> str:
    return Path(os.path.relpath(Path(path), Path(start).parent)).as_posix()


# ---------------------------------------------------------------------------------------------- the document


def headline(frame: pd.DataFrame, best: stats.BestSet, eligible_note: str, confidence: float) -> list[str]:
    """The computed answer to "which combinations work well together": one paragraph, then the factorial table."""
    anova = stats.factorial_anova(frame, ACCURACY)
    init_text, effects = init_answer(frame, anova, confidence)
    paragraph = " ".join(
        [
            init_text,
            interaction_answer(frame, anova, effects, confidence),
            optimizer_answer(frame, anova, confidence),
            best_set_answer(best, eligible_note),
            sensitivity_answer(frame, effects, confidence),
        ]
    )
    return ["## Answer", paragraph, factorial_table(anova)]


def findings_markdown(
    summary: pd.DataFrame,
    all_metrics: list[dict],
    target_accuracy: float,
    confidence: float,
    figures: dict[str, str],
    tables: dict[str, str],
    output: str | Path,
    extra_sections: tuple[str, ...] = (),
    step_costs: pd.DataFrame | None = None,
) -> str:
    """The whole document. `figures` and `tables` map captions to paths, linked relative to `output`;
    `extra_sections` (Markdown, e.g. the diagnostics') go before the figures; `step_costs` is the isolated
    per-step cost per (init, optimizer) (results/step_cost.csv), or None when it was not measured.
    Every number is computed from the per-run `summary`, so each test sees the individual seeds."""
    frame = analysed(summary)
    best, counts, eligible_note = select_best(frame, confidence)
    spread = bool((counts["n_completed"] >= 2).any())
    noise_note = (
        f"Means over completed seeds with descriptive {confidence:.0%} intervals in brackets."
        if spread
        else "**One seed per combination: no uncertainty can be estimated** for a single combination; the values "
        "are single runs. Comparisons pooled over several pairs may still be testable (they say so); rerun with "
        "several `grid.seeds` for the rest."
    )
    sections = [
        "<!-- Generated by workflow/scripts/write_findings.py from results/runs/*/metrics.json. Do not edit: "
        "rerun Snakemake to regenerate. -->",
        "# Findings: weight initialisation × optimizer on FashionMNIST",
        "*Generated from the runs' metrics; every number and verdict below is computed, none is typed in.*",
        *headline(frame, best, eligible_note, confidence),
        "## Best combinations",
        "Ranked on final validation accuracy; test accuracy only reports. Only combinations whose every seed "
        "completed can be best.",
        ranking_table(frame, best, counts, confidence),
        "## Summary",
        noise_note,
        summary_table(frame, counts, confidence),
        "Tables: " + ", ".join(f"[{caption}]({relative(path, output)})" for caption, path in tables.items()) + "."
        if tables
        else "",
        init_section(frame, confidence),
        speed_section(frame, all_metrics, target_accuracy, confidence),
        cost_section(frame, counts, step_costs),
        "## Poor results, missed targets and divergence",
        "\n".join(problems(frame, counts, best, target_accuracy)),
        *(section.strip() for section in extra_sections),
        "## Figures",
        "\n\n".join(f"![{caption}]({relative(path, output)})" for caption, path in figures.items()),
        "## Methods",
        methods(all_metrics, target_accuracy, confidence),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"
