"""The depth study's Markdown section: every sentence computed from depth_analysis's tables and decisions.

Where init starts to matter (one Holm family per metric across depths), which optimizers detect it, and
whether an adaptive optimizer hides it: said only when the difference of the init effects under two optimizers
is shown (seed by seed), never from a non-rejection alone; an optimizer whose comparisons are untestable is
called untestable; "N seeds cannot show any effect" only for a family that detected nothing, for the n that
gives its smallest reachable p.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from fmnist_initopt import levels, maxstat, signflip, stats
from fmnist_initopt.aggregate import ADAPTIVE_OPTIMIZERS
from fmnist_initopt.depth_analysis import (
    CHANCE_ACCURACY,
    DID_NOT_TRAIN_BELOW,
    HEADING,
    METRIC_LABELS,
    DepthEffect,
    depth_table,
    init_effects_by_depth,
    outcome_summary,
    signal_summary,
)
from fmnist_initopt.findings_comparisons import comparison_text
from fmnist_initopt.signflip import N_RESAMPLES
from fmnist_initopt.wording import count, finite, percent, ratio


def depth_label(depth: int) -> str:
    return "0 (the brief's CNN)" if depth == 0 else f"{depth} (+{depth} conv)"


def _range(mean: float, low: float, high: float, several: bool) -> str:
    if pd.isna(mean):
        return "n/a"
    return f"{percent(mean)} [{percent(low)}–{percent(high)}]" if several and low != high else percent(mean)


def _outcome_text(row) -> str:
    parts = [f"{row.trained}/{row.runs} trained"]
    if row.did_not_train:
        parts.append(f"**{row.did_not_train} did not train**")
    if row.diverged:
        parts.append(f"**{row.diverged} diverged**")
    return ", ".join(parts)


def _outcome_table(summary: pd.DataFrame, several_seeds: bool) -> str:
    shown = pd.DataFrame(
        {
            "depth": summary["depth"].map(depth_label),
            "init": summary["init"],
            "optimizer": summary["optimizer"],
            "runs": [_outcome_text(row) for row in summary.itertuples()],
            "epoch-1 val. accuracy": [
                _range(row.epoch1_val_accuracy_mean, row.epoch1_val_accuracy_min, row.epoch1_val_accuracy_max, True)
                for row in summary.itertuples()
            ],
            "final val. accuracy": [
                _range(row.final_val_accuracy_mean, row.final_val_accuracy_min, row.final_val_accuracy_max, True)
                for row in summary.itertuples()
            ],
        }
    )
    note = " (mean [min–max] over seeds)" if several_seeds else ""
    return f"Per depth, init and optimizer{note}:\n\n" + shown.to_markdown(index=False, disable_numparse=True)


def _signal_lines(reference: str, signal: pd.DataFrame, several_seeds: bool) -> list[str]:
    shown = pd.DataFrame(
        {
            "depth": signal["depth"].map(depth_label),
            "init": signal["init"],
            "logit std at init": signal["logit_std"].map(ratio),
            f"÷ {reference}'s": [
                ratio(row.ratio_mean)
                + (f" [{ratio(row.ratio_min)}–{ratio(row.ratio_max)}]" if several_seeds and row.seeds > 1 else "")
                for row in signal.itertuples()
            ],
        }
    )
    lines = [
        f"Signal at initialisation: the std of the logits on the probe batch, and its ratio to {reference}'s at the "
        "same depth and seed" + (" (mean [min–max] over seeds)" if several_seeds else "") + ":",
        "",
        shown.to_markdown(index=False, disable_numparse=True),
        "",
    ]
    others = signal[(signal["init"] != reference) & signal["ratio_mean"].notna()]
    for init, group in others.groupby("init", sort=True):
        group = group.sort_values("depth")
        if len(group) < 2:
            continue
        steps = ", ".join(f"{ratio(r.ratio_mean)} at depth {r.depth}" for r in group.itertuples())
        lines.append(f"- **{init}**'s logits relative to {reference}'s: {steps}.")
    return lines + ([""] if len(lines) > 4 else [])


def _failure_lines(summary: pd.DataFrame, depths: list[int]) -> list[str]:
    failed = summary[(summary["did_not_train"] > 0) | (summary["diverged"] > 0)]
    if failed.empty:
        return [f"Every run trained (final validation accuracy ≥ {DID_NOT_TRAIN_BELOW:.2f}) at every depth."]
    lines = []
    for depth in depths:
        rows = failed[failed["depth"] == depth]
        if rows.empty:
            continue
        what = "; ".join(f"{row.init} + {row.optimizer}: {_outcome_text(row)}" for row in rows.itertuples())
        lines.append(f"- Depth {depth_label(depth)}: {what}.")
    return [
        f"Runs that did not train (final validation accuracy below {DID_NOT_TRAIN_BELOW:.2f}; chance is "
        f"{CHANCE_ACCURACY:.2f}) or diverged:",
        "",
        *lines,
    ]


def _difference(c) -> str:
    return f"{c.level} − {c.reference}"


def _effect_lines(
    table: pd.DataFrame, effects: list[DepthEffect], metric: str, optimizer_classes: dict[str, str], confidence: float
) -> list[str]:
    label = METRIC_LABELS[metric]
    tested = [e for e in effects if e.reference is not None and e.pooled]
    if not tested:
        return [f"- **{label.capitalize()}:** fewer than two inits have values at any depth: nothing to compare."]
    detected = [e for e in tested if e.detected]
    lines = [_verdict_line(tested, detected, label)]
    for effect in tested:
        for comparison in effect.pooled:
            lines.append(
                f"  - depth {effect.depth}, {_difference(comparison)} (all optimizers): {comparison_text(comparison)}"
            )
    lines += _hiding_lines(table, detected, metric, optimizer_classes, confidence)
    lines += cannot_show_lines(tested, "pooled over optimizers", lambda e: [e.pooled], confidence)
    floor = cannot_show_lines(tested, "per optimizer", lambda e: list(e.per_optimizer.values()), confidence)
    if floor:
        floor[-1] += " Which optimizers hide the init effect is therefore not tested; their estimates are descriptive."
    return lines + floor


def _verdict_line(tested: list[DepthEffect], detected: list[DepthEffect], label: str) -> str:
    if detected:
        first = detected[0]
        deeper = [e for e in tested if e.depth > first.depth]
        where = "already at depth 0, the brief's CNN" if first.depth == 0 else f"from depth {first.depth} on"
        if deeper and not all(e.detected for e in deeper):
            where = f"at depth {', '.join(str(e.depth) for e in detected)} (not at every deeper depth)"
        if len(tested) == 1:
            where = f"at depth {first.depth}, the only depth trained"
        return (
            f"- **{label.capitalize()}:** the init effect is larger than seed noise {where}: "
            f"detected at {len(detected)} of {count(len(tested), 'depth')}."
        )
    found = [(e, c) for e in tested for c in e.pooled if c.verdict != "untestable" and finite(c.estimate)]
    text = f"- **{label.capitalize()}:** at no depth is the init effect larger than seed noise"
    if found:
        effect, largest = max(found, key=lambda item: abs(item[1].estimate))
        text += (
            f"; the largest difference is at depth {effect.depth}: {_difference(largest)}, {comparison_text(largest)}"
        )
    elif any(c.verdict == "untestable" for e in tested for c in e.pooled):
        text += "; every comparison is untestable (reasons below)"
    return text + ". Not detected is not evidence of equality."


def _floor(n_units: int, levels_compared: int) -> float:
    """The smallest p of the same test with n seeds (sign-flip for two inits, else max-statistic): how many seeds
    a family would need. A record's own floor is its `smallest_p`."""
    if levels_compared <= 2:
        return signflip.smallest_p(n_units)
    return maxstat.smallest_p(n_units, (levels_compared,))


def cannot_show_lines(tested: list[DepthEffect], family_name: str, families, confidence: float) -> list[str]:
    """When a family detected nothing because it could not, by design: the smallest adjusted p any of its
    comparisons could reach (the smallest of their tests' floors, `smallest_p`, times the number of scopes:
    Holm's first step across scopes) is above alpha. Said only where nothing was detected, for the comparison
    with that smallest floor, with the seeds that could."""
    pairs = [(c, e.levels) for e in tested for group in families(e) for c in group if c.verdict != "untestable"]
    if not pairs or any(c.verdict == "different" for c, _ in pairs):
        return []
    alpha = stats.alpha_of(confidence)
    scopes = len({tuple(c.scope.items()) for c, _ in pairs})
    comparison, compared = min(pairs, key=lambda item: item[0].smallest_p)
    smallest = min(1.0, comparison.smallest_p * scopes)
    if smallest <= alpha:
        return []
    could = next((n for n in range(comparison.n_units + 1, 101) if _floor(n, compared) * scopes <= alpha), None)
    after = f" after {comparison.adjustment}" if comparison.adjustment else ""
    return [
        f"  - {family_name.capitalize()}, {count(comparison.n_units, 'seed')} cannot show any effect{after} (the "
        f"smallest possible {'adjusted ' if scopes > 1 else ''}p is {smallest:.2g}, alpha {alpha:g}); "
        + (f"{count(could, 'seed')} could." if could else "more than 100 seeds would be needed.")
    ]


def _adaptive(optimizer: str, optimizer_classes: dict[str, str]) -> bool:
    return optimizer_classes.get(optimizer) in ADAPTIVE_OPTIMIZERS


def _kind(optimizer: str, optimizer_classes: dict[str, str]) -> str:
    return f"{optimizer} (adaptive)" if _adaptive(optimizer, optimizer_classes) else optimizer


def _contrast(table, metric, depth, pooled, adaptive, other, confidence) -> tuple[stats.Comparison, float, float]:
    """The init effect (pooled.level - pooled.reference) under `other` minus under `adaptive`, per seed: does
    the effect differ between the two optimizers? With both effects' means, to say which is smaller."""

    def effect(optimizer):
        scope = {"depth": depth, "optimizer": optimizer}
        return levels.seed_differences(table, metric, "init", pooled.level, pooled.reference, scope=scope)

    under_other, under_adaptive = effect(other), effect(adaptive)
    common = under_other.index.intersection(under_adaptive.index)
    comparison = stats.paired_difference(
        under_other[common], under_adaptive[common], confidence,
        factor="optimizer", level=other, reference=adaptive, scope={"depth": depth},
    )  # fmt: skip
    return comparison, float(under_adaptive[common].mean()), float(under_other[common].mean())


def _hiding_lines(table, detected, metric, optimizer_classes, confidence) -> list[str]:
    """At the depths where the pooled effect is detected: under which optimizers it is detected, not detected
    or untestable, and, for an adaptive optimizer that does not detect it, whether its effect is smaller than
    under a non-adaptive optimizer that does (the difference of the two effects, tested over seeds; one Holm
    family per metric). Only that test, never a non-rejection alone, lets the section say an optimizer hides
    the effect; an untestable optimizer is named as untestable."""
    plans = []
    for effect in detected:
        shown = [o for o in effect.per_optimizer if effect.detected_under(o)]
        for pooled in (c for c in effect.pooled if c.verdict == "different"):
            for adaptive in effect.per_optimizer:
                quiet = not effect.detected_under(adaptive) and not effect.untestable_under(adaptive)
                if quiet and _adaptive(adaptive, optimizer_classes):
                    plans += [(effect.depth, pooled, adaptive, o) for o in shown if not _adaptive(o, optimizer_classes)]
    tests = [_contrast(table, metric, *plan, confidence) for plan in plans]
    adjusted = stats.holm([comparison for comparison, _, _ in tests], confidence)
    contrasts = {plan[0]: [] for plan in plans}
    for plan, comparison, (_, adaptive_mean, other_mean) in zip(plans, adjusted, tests):
        contrasts[plan[0]].append((plan, comparison, abs(adaptive_mean) < abs(other_mean)))
    lines = []
    for effect in detected:
        lines.append(_per_optimizer_line(effect, optimizer_classes, contrasts.get(effect.depth, [])))
        for optimizer in sorted(effect.per_optimizer):
            for comparison in effect.per_optimizer[optimizer]:
                lines.append(f"    - {optimizer}: {_difference(comparison)}: {comparison_text(comparison)}")
    return lines


def _per_optimizer_line(effect: DepthEffect, optimizer_classes: dict[str, str], contrasts: list) -> str:
    optimizers = sorted(effect.per_optimizer)
    groups = {
        "detected under": [o for o in optimizers if effect.detected_under(o)],
        "not detected under": [
            o for o in optimizers if not effect.detected_under(o) and not effect.untestable_under(o)
        ],
        "untestable under": [o for o in optimizers if effect.untestable_under(o)],
    }
    text = f"  - depth {effect.depth}, per optimizer: " + "; ".join(
        f"{what} {', '.join(_kind(o, optimizer_classes) for o in names)}" for what, names in groups.items() if names
    )
    reasons = sorted({c.reason for o in groups["untestable under"] for c in effect.per_optimizer[o] if c.reason})
    if reasons:
        text += f" ({'; '.join(reasons)})"
    for (_, pooled, adaptive, other), comparison, smaller in contrasts:
        phrase = f"{other} − {adaptive}, {pooled.level} − {pooled.reference}: {comparison_text(comparison)}"
        if comparison.verdict == "different" and smaller:
            text += (
                f"; the init effect is smaller under {adaptive} than under {other} (difference of the effects, "
                f"{phrase}): the adaptive step sizes of {adaptive} hide the init effect at this depth"
            )
        else:
            text += (
                f"; {adaptive}'s effect is not shown to be smaller than {other}'s (difference of the effects, "
                f"{phrase}), so not detected under {adaptive} does not show that it hides the effect"
            )
    return text + "."


def depth_section(metrics_list: list[dict[str, Any]], confidence: float, n_resamples: int = N_RESAMPLES) -> str:
    """The findings' depth section as Markdown, every statement computed from the runs.
    `n_resamples` bounds the permutations and bootstrap resamples of each test (signflip.N_RESAMPLES)."""
    table = depth_table(metrics_list)
    if table.empty:
        raise ValueError("depth_section needs at least one run")
    depths = sorted(table["depth"].unique().tolist())
    seeds = table.groupby(["depth", "init", "optimizer"])["seed"].nunique()
    several_seeds = bool(seeds.min() > 1)
    summary = outcome_summary(table)
    reference, signal = signal_summary(table)
    optimizer_classes = dict(zip(table["optimizer"], table["optimizer_class"]))
    first = metrics_list[0]
    lines = [
        HEADING,
        "",
        f"{count(len(table), 'run')}: {count(len(depths), 'depth')} ({', '.join(map(str, depths))} extra 3x3 "
        "conv + ReLU layers without normalisation after the second pooling; 0 is the brief's CNN) × "
        f"{count(table['init'].nunique(), 'init')} × {count(table['optimizer'].nunique(), 'optimizer')} × "
        f"{count(table['seed'].nunique(), 'seed')}, {count(first['spec']['epochs'], 'epoch')} on "
        f"{first['data']['train']} training images.",
        "",
        _outcome_table(summary, several_seeds),
        "",
        *_failure_lines(summary, depths),
        "",
        *_signal_lines(reference, signal, several_seeds),
    ]
    lines += ["### Verdict", ""]
    if len(depths) == 1:
        lines.append(
            f"Only depth {depths[0]} was trained, so *at which depth* initialisation starts to matter cannot be "
            "answered here; list two or more depths under model.extra_conv_layers (config/depth.yaml)."
        )
    if (table["outcome"] != "trained").all():
        lines.append(
            f"**No run trained at any depth**: every run diverged or ended below {DID_NOT_TRAIN_BELOW:.2f} "
            f"validation accuracy (chance is {CHANCE_ACCURACY:.2f}). No init made this network learn, so no "
            "difference between inits can be shown."
        )
        return "\n".join(lines) + "\n"
    if not several_seeds:
        lines.append(
            "With one seed per (depth, init, optimizer), seed-to-seed noise cannot be estimated, so no init effect "
            "is tested: the table above shows single runs."
        )
        return "\n".join(lines) + "\n"
    lines += [
        stats.decision_rule_text(confidence),
        "Each init is compared with the best init at its depth, the seed as the unit (pooled: each seed's "
        "differences averaged over the optimizers); the comparisons of all depths form one Holm family per metric "
        "(pooled, and per optimizer). Whether an optimizer hides the effect is tested as the difference of the "
        "init effects under two optimizers, seed by seed.",
        "",
    ]
    for metric in ("final_val_accuracy", "epoch1_val_accuracy"):
        effects = init_effects_by_depth(table, metric, confidence, n_resamples)
        lines += _effect_lines(table, effects, metric, optimizer_classes, confidence)
    return "\n".join(lines) + "\n"
