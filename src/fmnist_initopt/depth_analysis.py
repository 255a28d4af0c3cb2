"""The depth study: does the initialisation decide whether, and how fast, the network trains?

Pure functions of metrics.json dictionaries from runs at several depths (`run.depth`: extra conv layers,
0 = the brief's CNN), plus the figure. Every statement of the section is computed here:

* A run's outcome: "diverged" (its loss stopped being finite), "did not train" (it completed but its final
  validation accuracy stayed below DID_NOT_TRAIN_BELOW, i.e. near chance: ten balanced classes give 0.10),
  or "trained". A run stuck at chance is a result, reported like a divergence; its accuracy is a measured
  value and stays in the comparisons (diverged runs have none and are dropped, and counted, there).
* The signal at initialisation: the std of the logits on the probe batch (diagnostics, epoch 0), relative
  to the reference init's (He) at the same depth and seed. It depends on init, depth and seed only.
* The init effect at each depth: stats.pairwise_init_effects (every init against the best one, paired on
  (optimizer, seed), exact sign-flip tests), on final and on epoch-1 validation accuracy. "Larger than seed
  noise" is the report's one decision rule: Holm-adjusted p < alpha. Scanning the depths for the first one
  where init matters is one family per metric: the pooled comparisons of all depths are Holm-corrected
  together, and so are the per-optimizer comparisons of all depths.
* Which optimizers hide the effect: at the depths where the pooled effect is detected, the optimizers
  whose own comparisons do not detect it, labelled adaptive when their class scales each parameter's step
  by its gradient history (Adam, RMSprop, ...).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from fmnist_initopt import stats  # noqa: E402
from fmnist_initopt.atomic import atomic_path  # noqa: E402

HEADING = "## Does initialisation decide convergence?"
CHANCE_ACCURACY = 0.10  # FashionMNIST: ten balanced classes
# Final validation accuracy below this counts as "did not train": chance plus a margin wide enough for the
# drift of an untrained network's argmax, far below anything a trained run reaches in one epoch (~0.7).
DID_NOT_TRAIN_BELOW = 0.20
REFERENCE_INIT = "he"  # the init whose derivation keeps the signal's variance; the signal ratios divide by it
# torch.optim classes that scale each parameter's step by its own gradient history.
ADAPTIVE_OPTIMIZERS = frozenset({"Adadelta", "Adagrad", "Adam", "Adamax", "AdamW", "NAdam", "RAdam", "RMSprop"})
OUTCOMES = ("trained", "did not train", "diverged")
METRIC_LABELS = {
    "final_val_accuracy": "final validation accuracy",
    "epoch1_val_accuracy": "epoch-1 validation accuracy",
}
TABLE_COLUMNS = [
    "depth",
    "init",
    "optimizer",
    "optimizer_class",
    "seed",
    "outcome",
    "epoch1_val_accuracy",
    "final_val_accuracy",
    "logit_std",
    "parameters",
]


def outcome(metrics: dict[str, Any]) -> str:
    if metrics["status"] == "diverged":
        return "diverged"
    accuracy = metrics["history"]["val_accuracy"]
    return "trained" if accuracy and accuracy[-1] >= DID_NOT_TRAIN_BELOW else "did not train"


def _logit_std_at_init(metrics: dict[str, Any]) -> float:
    found = metrics["diagnostics"]
    value = found["activation_std"][found["layers"][-1]][0]
    return math.nan if value is None else float(value)


def depth_table(metrics_list: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per run: its (depth, init, optimizer, seed), outcome, epoch-1 and final validation accuracy
    (NaN for a diverged run), and its logits' std at initialisation."""
    rows = []
    for metrics in metrics_list:
        run, accuracy = metrics["run"], metrics["history"]["val_accuracy"]
        result = outcome(metrics)
        completed = result != "diverged"
        rows.append(
            {
                "depth": int(run.get("depth", 0)),  # runs written before depth existed are the brief's CNN
                "init": run["init"],
                "optimizer": run["optimizer"],
                "optimizer_class": metrics["spec"]["optimizer_class"],
                "seed": run["seed"],
                "outcome": result,
                "epoch1_val_accuracy": accuracy[0] if completed and accuracy else math.nan,
                "final_val_accuracy": accuracy[-1] if completed and accuracy else math.nan,
                "logit_std": _logit_std_at_init(metrics),
                "parameters": metrics.get("model", {}).get("parameters"),
            }
        )
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def outcome_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per (depth, init, optimizer): runs, how many trained / did not / diverged, and the epoch-1 and final
    validation accuracy (mean, min, max over the runs that have one)."""
    grouped = table.groupby(["depth", "init", "optimizer"], sort=True)
    summary = grouped.agg(
        runs=("seed", "count"),
        **{name.replace(" ", "_"): ("outcome", lambda s, name=name: int((s == name).sum())) for name in OUTCOMES},
        **{
            f"{metric}_{stat}": (metric, stat)
            for metric in ("epoch1_val_accuracy", "final_val_accuracy")
            for stat in ("mean", "min", "max")
        },
    )
    return summary.reset_index()


def signal_reference(inits: Sequence[str], table: pd.DataFrame) -> str:
    """He when it was trained; otherwise the init whose logits are strongest at initialisation."""
    if REFERENCE_INIT in inits:
        return REFERENCE_INIT
    return str(table.groupby("init")["logit_std"].mean().idxmax())


def signal_summary(table: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """The reference init and, per (depth, init), the logits' std at initialisation (mean over seeds) and its
    ratio to the reference's at the same depth and seed (mean, min, max over seeds)."""
    at_init = table.drop_duplicates(["depth", "init", "seed"])  # the snapshot does not depend on the optimizer
    reference = signal_reference(list(at_init["init"].unique()), at_init)
    wide = at_init.pivot_table(index=["depth", "seed"], columns="init", values="logit_std", aggfunc="first")
    rows = []
    for (depth, init), group in at_init.groupby(["depth", "init"], sort=True):
        by_seed = wide.loc[depth]
        ratio = (by_seed[init] / by_seed[reference]).dropna() if reference in by_seed else pd.Series(dtype=float)
        rows.append(
            {
                "depth": depth,
                "init": init,
                "logit_std": group["logit_std"].mean(),
                "ratio_mean": ratio.mean() if len(ratio) else math.nan,
                "ratio_min": ratio.min() if len(ratio) else math.nan,
                "ratio_max": ratio.max() if len(ratio) else math.nan,
                "seeds": len(ratio),
            }
        )
    return reference, pd.DataFrame(rows)


@dataclass(frozen=True)
class DepthEffect:
    """The init comparisons of one metric at one depth, Holm-adjusted across all depths."""

    depth: int
    reference: str | None  # the best-mean init at this depth; None when fewer than two inits have values
    pooled: tuple  # stats.Comparison, other init - reference, paired on (optimizer, seed)
    per_optimizer: dict  # optimizer -> tuple of stats.Comparison
    status: str

    @property
    def detected(self) -> bool:
        return any(c.verdict == "different" for c in self.pooled)

    def detected_under(self, optimizer: str) -> bool:
        return any(c.verdict == "different" for c in self.per_optimizer.get(optimizer, ()))


def _optimizer_of(comparison: stats.Comparison) -> str:
    # pairwise_init_effects labels a per-optimizer comparison "<other> - <reference> | <optimizer>";
    # names are letters and digits only, so the separator is unambiguous.
    return comparison.label.rsplit(" | ", 1)[1]


def init_effects_by_depth(
    table: pd.DataFrame, metric: str, confidence: float, n_resamples: int = stats.N_RESAMPLES
) -> list[DepthEffect]:
    """Per depth (increasing): every init against the best one on `metric`, pooled over optimizers and per
    optimizer; each of the two kinds is one Holm family across all depths (the scan for where init matters)."""
    raw = []
    for depth, group in table.groupby("depth", sort=True):
        raw.append((depth, stats.pairwise_init_effects(group, metric, confidence, n_resamples=n_resamples)))
    pooled = iter(stats.holm([c for _, effects in raw for c in effects.pooled], confidence))
    per_optimizer = iter(stats.holm([c for _, effects in raw for c in effects.per_optimizer], confidence))
    result = []
    for depth, effects in raw:
        depth_pooled = tuple(next(pooled) for _ in effects.pooled)
        by_optimizer: dict[str, list] = {}
        for _ in effects.per_optimizer:
            comparison = next(per_optimizer)
            by_optimizer.setdefault(_optimizer_of(comparison), []).append(comparison)
        result.append(
            DepthEffect(
                int(depth),
                effects.reference,
                depth_pooled,
                {name: tuple(items) for name, items in by_optimizer.items()},
                effects.status,
            )
        )
    return result


# --- The Markdown section ------------------------------------------------------------------------------


def depth_label(depth: int) -> str:
    return "0 (the brief's CNN)" if depth == 0 else f"{depth} (+{depth} conv)"


def _percent(value: float) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{100 * value:.1f}%"


def _range(mean: float, low: float, high: float, several: bool) -> str:
    if pd.isna(mean):
        return "n/a"
    return f"{_percent(mean)} [{_percent(low)}–{_percent(high)}]" if several and low != high else _percent(mean)


def _ratio(value: float) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{value:.3g}"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'s' * (number != 1)}"


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
            "logit std at init": signal["logit_std"].map(_ratio),
            f"÷ {reference}'s": [
                _ratio(row.ratio_mean)
                + (f" [{_ratio(row.ratio_min)}–{_ratio(row.ratio_max)}]" if several_seeds and row.seeds > 1 else "")
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
        steps = ", ".join(f"{_ratio(r.ratio_mean)} at depth {r.depth}" for r in group.itertuples())
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


def _effect_lines(effects: list[DepthEffect], metric: str, optimizer_classes: dict[str, str]) -> list[str]:
    label = METRIC_LABELS[metric]
    tested = [e for e in effects if e.reference is not None]
    if not tested:
        return [f"- **{label.capitalize()}:** fewer than two inits have values at any depth: nothing to compare."]
    detected = [e for e in tested if e.detected]
    lines = []
    if detected:
        first = detected[0]
        deeper = [e.depth for e in tested if e.depth > first.depth]
        stays = all(e.detected for e in tested if e.depth > first.depth)
        where = "already at depth 0, the brief's CNN" if first.depth == 0 else f"from depth {first.depth} on"
        if deeper and not stays:
            where = f"at depth {', '.join(str(e.depth) for e in detected)} (not at every deeper depth)"
        if len(tested) == 1:
            where = f"at depth {first.depth}, the only depth trained"
        lines.append(
            f"- **{label.capitalize()}:** the init effect is larger than seed noise {where}: "
            f"detected at {len(detected)} of {len(tested)} depths."
        )
    else:
        largest = max(
            ((e, c) for e in tested for c in e.pooled if math.isfinite(c.estimate)),
            key=lambda item: abs(item[1].estimate),
            default=None,
        )
        text = f"- **{label.capitalize()}:** at no depth is the init effect larger than seed noise"
        if largest is not None:
            text += f"; the largest difference is at depth {largest[0].depth}: {largest[1].label}, " + stats.describe(
                largest[1]
            )
        lines.append(text + ". Not detected is not evidence of equality.")
    for effect in tested:
        for comparison in effect.pooled:
            lines.append(f"  - depth {effect.depth}, {comparison.label} (all optimizers): {stats.describe(comparison)}")
    lines += _hiding_lines(detected, optimizer_classes)
    optimizers = len({o for e in tested for o in e.per_optimizer})
    lines += _holm_floor_lines([c for e in tested for c in e.pooled], "pooled over optimizers", optimizers)
    if not any(e.detected_under(o) for e in tested for o in e.per_optimizer):
        per_optimizer = [c for e in tested for items in e.per_optimizer.values() for c in items]
        floor = _holm_floor_lines(per_optimizer, "per optimizer", 1)
        if floor:
            floor[-1] += (
                " Which optimizers hide the init effect is therefore not tested; their estimates are descriptive."
            )
        lines += floor
    return lines


def _holm_floor_lines(comparisons: list, family_name: str, pairs_per_seed: int) -> list[str]:
    """When a family cannot reject by design, say so and how many seeds could: with n pairs the exact
    sign-flip test's smallest p is 2 / 2**n, and Holm multiplies the smallest p by the family's size."""
    testable = [c for c in comparisons if c.verdict != "untestable"]
    if not testable:
        return []
    family, pairs, alpha = len(testable), min(c.n for c in testable), testable[0].alpha
    smallest_adjusted = min(1.0, 2.0 / 2.0**pairs * family)
    if smallest_adjusted < alpha:
        return []
    pairs_needed = math.floor(math.log2(2 * family / alpha)) + 1
    seeds_needed = math.ceil(pairs_needed / pairs_per_seed)
    return [
        f"  - {family_name.capitalize()}, {pairs} pairs cannot show any effect after the Holm correction over "
        f"{family} comparisons (the smallest possible adjusted p is {smallest_adjusted:.2g}, alpha {alpha:g}); "
        f"{seeds_needed} seeds could."
    ]


def _adaptive(optimizer: str, optimizer_classes: dict[str, str]) -> bool:
    return optimizer_classes.get(optimizer) in ADAPTIVE_OPTIMIZERS


def _hiding_lines(detected: list[DepthEffect], optimizer_classes: dict[str, str]) -> list[str]:
    """At the depths where the pooled effect is detected: under which optimizers it is detected, and which
    adaptive optimizers hide it (their own comparisons do not detect it)."""
    lines = []
    for effect in detected:
        optimizers = sorted(effect.per_optimizer)
        shown = [o for o in optimizers if effect.detected_under(o)]
        hidden = [o for o in optimizers if not effect.detected_under(o)]
        reasons = {c.reason for o in hidden for c in effect.per_optimizer[o] if c.reason}
        kind = lambda o: f"{o} (adaptive)" if _adaptive(o, optimizer_classes) else o  # noqa: E731
        text = f"  - depth {effect.depth}, per optimizer: "
        if shown:
            text += f"detected under {', '.join(map(kind, shown))}"
        if hidden:
            text += ("; " if shown else "") + f"not detected under {', '.join(map(kind, hidden))}"
        hiding = [o for o in hidden if _adaptive(o, optimizer_classes)]
        if shown and hiding and not any(_adaptive(o, optimizer_classes) for o in shown):
            text += f": the adaptive step sizes of {', '.join(hiding)} hide the init effect at this depth"
        elif not shown and reasons:
            text += f" ({'; '.join(sorted(reasons))})"
        lines.append(text + ".")
        for optimizer in optimizers:
            for comparison in effect.per_optimizer[optimizer]:
                lines.append(f"    - {comparison.label}: {stats.describe(comparison)}")
    return lines


def depth_section(metrics_list: list[dict[str, Any]], confidence: float, n_resamples: int = stats.N_RESAMPLES) -> str:
    """The findings' depth section as Markdown, every statement computed from the runs.
    `n_resamples` bounds the permutations and bootstrap resamples of each test (stats.N_RESAMPLES)."""
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
        f"{_count(len(table), 'run')}: {_count(len(depths), 'depth')} ({', '.join(map(str, depths))} extra 3x3 "
        "conv + ReLU layers without normalisation after the second pooling; 0 is the brief's CNN) × "
        f"{_count(table['init'].nunique(), 'init')} × {_count(table['optimizer'].nunique(), 'optimizer')} × "
        f"{_count(table['seed'].nunique(), 'seed')}, {_count(first['spec']['epochs'], 'epoch')} on "
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
        "Each init is compared with the best init at its depth, paired on (optimizer, seed); the comparisons of "
        "all depths form one Holm family per metric (pooled, and per optimizer).",
        "",
    ]
    for metric in ("final_val_accuracy", "epoch1_val_accuracy"):
        effects = init_effects_by_depth(table, metric, confidence, n_resamples)
        lines += _effect_lines(effects, metric, optimizer_classes)
    return "\n".join(lines) + "\n"


# --- The figure ----------------------------------------------------------------------------------------


def depth_figure(metrics_list: list[dict[str, Any]], path: str | Path) -> None:
    """Validation accuracy against depth, one panel per optimizer, one colour per init: final accuracy solid,
    epoch-1 accuracy dashed, mean over seeds with min–max bars; chance dotted; failed runs as crosses."""
    table = depth_table(metrics_list)
    summary = outcome_summary(table)
    optimizers = list(dict.fromkeys(table["optimizer"]))
    inits = list(dict.fromkeys(table["init"]))
    colours = {init: plt.get_cmap("tab10")(index % 10) for index, init in enumerate(inits)}
    figure, axes = plt.subplots(1, len(optimizers), figsize=(4.2 * len(optimizers), 3.8), sharey=True, squeeze=False)
    for axis, optimizer in zip(axes[0], optimizers):
        for init in inits:
            group = summary[(summary["optimizer"] == optimizer) & (summary["init"] == init)].sort_values("depth")
            for metric, style in (("final_val_accuracy", "-"), ("epoch1_val_accuracy", "--")):
                mean = group[f"{metric}_mean"]
                errors = [mean - group[f"{metric}_min"], group[f"{metric}_max"] - mean]
                axis.errorbar(
                    group["depth"],
                    mean,
                    yerr=errors,
                    color=colours[init],
                    linestyle=style,
                    marker="o",
                    capsize=3,
                )
            failed = table[
                (table["optimizer"] == optimizer) & (table["init"] == init) & (table["outcome"] != "trained")
            ]
            axis.scatter(
                failed["depth"], failed["final_val_accuracy"].fillna(0.0), marker="x", color=colours[init], s=50
            )
        axis.axhline(CHANCE_ACCURACY, color="grey", linestyle=":")
        axis.set_xticks(sorted(table["depth"].unique()))
        axis.set_xlabel("extra conv layers (0 = the brief's CNN)")
        axis.set_title(optimizer)
        axis.set_ylim(0, 1)
        axis.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("validation accuracy")
    handles = [Line2D([], [], color=colours[init], marker="o", label=init) for init in inits] + [
        Line2D([], [], color="black", label="final"),
        Line2D([], [], color="black", linestyle="--", label="epoch 1"),
        Line2D([], [], color="black", marker="x", linestyle="", label="did not train\n(diverged: at 0)"),
        Line2D([], [], color="grey", linestyle=":", label=f"chance ({CHANCE_ACCURACY:.2f})"),
    ]
    figure.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small")
    figure.suptitle("Validation accuracy against depth (mean over seeds, bars: min–max)")
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
