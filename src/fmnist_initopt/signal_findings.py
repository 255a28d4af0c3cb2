"""The findings' signal-propagation section as Markdown, every statement computed by `signal_analysis`.

Any set of runs gives a section: it names the runs that lack what it measures (never finished epoch 1,
diverged, no diagnostics) and says what could not be measured or tested instead of failing.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from fmnist_initopt import stats
from fmnist_initopt.findings_comparisons import comparison_text
from fmnist_initopt.signal_analysis import (
    FirstEpoch,
    epoch1_table,
    epoch1_verdict,
    first_epoch_comparison,
    init_signal_table,
    layer_summary,
    signal_ratios,
    usable_diagnostics,
    weak_and_strong,
)
from fmnist_initopt.wording import percent


def _number(value: float) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{value:.3g}"


def _runs_phrase(runs: int, missing: int) -> str:
    return f"{runs} run{'s' * (runs != 1)}" + (f", {missing} without epoch 1" if missing else "")


def _what_happened(metrics_list: list[dict[str, Any]]) -> list[str]:
    """Which runs lack what this section measures, named, so no number silently leaves a run out."""
    table = epoch1_table(metrics_list)
    lines = []
    early = table[table["epoch1_val_accuracy"].isna()]
    if not early.empty:
        diverged = early[early["status"] == "diverged"]
        lines.append(
            f"- {len(early)} of {len(table)} runs never finished epoch 1"
            + (f" ({len(diverged)} diverged)" if len(diverged) else "")
            + f": {', '.join(early['run_id'])}. Their signal at initialisation is included; they have no "
            "epoch-1 accuracy, so they drop out of the epoch-1 comparison."
        )
    later = table[(table["status"] == "diverged") & table["epoch1_val_accuracy"].notna()]
    if not later.empty:
        lines.append(f"- {len(later)} runs diverged after epoch 1: {', '.join(later['run_id'])}.")
    blind = [m["run"].get("id", m["run"]["init"]) for m in metrics_list if usable_diagnostics(m) is None]
    if blind:
        lines.append(f"- {len(blind)} of {len(metrics_list)} runs carry no signal diagnostics: {', '.join(blind)}.")
    return lines + ([""] if lines else [])


def _layer_table(summary: pd.DataFrame, several_seeds: bool) -> str:
    def spread(mean, low, high):
        return f"{_number(mean)} [{_number(low)}–{_number(high)}]" if several_seeds else _number(mean)

    shown = pd.DataFrame(
        {
            "init": summary["init"],
            "layer": summary["layer"],
            "activation std": [
                spread(m, lo, hi)
                for m, lo, hi in zip(
                    summary["activation_std"], summary["activation_std_min"], summary["activation_std_max"]
                )
            ],
            "weight-gradient norm": [
                spread(m, lo, hi)
                for m, lo, hi in zip(
                    summary["weight_grad_norm"], summary["weight_grad_norm_min"], summary["weight_grad_norm_max"]
                )
            ],
        }
    )
    return shown.to_markdown(index=False)


def _first_epoch_lines(result: FirstEpoch, confidence: float) -> list[str]:
    weak, strong = result.weak, result.strong
    return [
        f"Did it converge more slowly in the first epoch? Validation accuracy after epoch 1, {weak} − {strong}, "
        "paired on seed (the same seed gives both inits the same data order), exact sign-flip permutation test, "
        f"Holm across optimizers, alpha = {stats.alpha_of(confidence):g} (the decision rule of Methods):",
        "",
        f"- **Pooled over optimizers** (each seed's difference averaged over the optimizers): "
        f"{comparison_text(result.pooled, mde=result.pooled_mde)}.",
        "",
        _first_epoch_table(result),
        "",
        _first_epoch_headline(result),
    ]


def _first_epoch_table(result: FirstEpoch) -> str:
    """Per optimizer: each init's mean epoch-1 accuracy (with its runs), their comparison and the verdict."""
    weak, strong, per = result.weak, result.strong, result.per_optimizer
    shown = pd.DataFrame(
        {
            "optimizer": per["optimizer"],
            f"{weak} (epoch-1 val. acc.)": [
                f"{percent(m, 2)} ({_runs_phrase(n, k)})"
                for m, n, k in zip(per["weak_mean"], per["weak_runs"], per["weak_without_epoch1"])
            ],
            f"{strong} (epoch-1 val. acc.)": [
                f"{percent(m, 2)} ({_runs_phrase(n, k)})"
                for m, n, k in zip(per["strong_mean"], per["strong_runs"], per["strong_without_epoch1"])
            ],
            f"{weak} − {strong} (Holm across optimizers)": [
                comparison_text(c, mde=mde) for c, mde in zip(per["comparison"], per["mde"])
            ],
            f"{weak} in epoch 1": per["verdict"],
        }
    )
    return shown.to_markdown(index=False)


def _first_epoch_headline(result: FirstEpoch) -> str:
    """The pooled verdict, how many optimizers' means point the same way, and which were tested on their own."""
    weak, strong, per, pooled = result.weak, result.strong, result.per_optimizer, result.pooled
    if pooled.verdict == "untestable":
        headline = f"Whether {weak} is slower in the first epoch is untestable here: {pooled.reason}."
    elif pooled.verdict == "different":
        headline = (
            f"Pooled over optimizers, {weak} was significantly {epoch1_verdict(pooled)} than {strong} in the first "
            f"epoch ({100 * pooled.estimate:+.2f} pp)."
        )
    else:
        headline = f"Pooled over optimizers, no epoch-1 difference between {weak} and {strong} was detected"
        if "cannot reach" in pooled.reason:
            headline += f": with {pooled.n_units} seeds no difference, however large, can reach significance."
        elif result.pooled_mde is not None and result.pooled_mde.value is not None:
            headline += f" (MDE {100 * result.pooled_mde.value:.2f} pp)."
        else:
            headline += "."
    known = per[per["weak_mean"].notna() & per["strong_mean"].notna()]
    lower = known.loc[known["weak_mean"] < known["strong_mean"], "optimizer"].tolist()
    headline += f" {weak}'s mean epoch-1 validation accuracy was lower with {len(lower)} of {len(known)} optimizers" + (
        f" ({', '.join(lower)})." if lower else "."
    )
    tested = per[per["verdict"] != "untestable"]
    if tested.empty:
        return headline + " No optimizer has two complete seeds, so none is tested on its own."
    slower = tested.loc[tested["verdict"] == "slower", "optimizer"].tolist()
    faster = tested.loc[tested["verdict"] == "faster", "optimizer"].tolist()
    headline += (
        f" Of the {len(tested)} optimizer(s) testable on their own, it was significantly slower with {len(slower)}"
        + (f" ({', '.join(slower)})" if slower else "")
        + (f" and significantly faster with {len(faster)} ({', '.join(faster)})" if faster else "")
        + ("; no difference was detected with the rest." if len(slower) + len(faster) < len(tested) else ".")
    )
    untested = per.loc[per["verdict"] == "untestable", "optimizer"].tolist()
    if untested:
        headline += f" Untestable (fewer than two complete seeds): {', '.join(untested)}."
    return headline


def signal_section(metrics_list: list[dict[str, Any]], confidence: float) -> str:
    """The findings' signal-propagation section as Markdown, every statement computed from the runs."""
    lines = ["## Why: signal propagation at initialisation", ""]
    if not metrics_list:
        return "\n".join(lines + ["No runs: nothing to report on signal propagation."]) + "\n"
    lines += _what_happened(metrics_list)
    table = init_signal_table(metrics_list)
    if table.empty:
        lines.append("No run carries signal diagnostics, so there is nothing to report on signal propagation.")
        return "\n".join(lines) + "\n"
    summary, ratios = layer_summary(table), signal_ratios(table)
    probe_sizes = sorted({d["probe_size"] for d in map(usable_diagnostics, metrics_list) if d and "probe_size" in d})
    probe = f"{' / '.join(map(str, probe_sizes))} training images" if probe_sizes else "training images"
    several_seeds = table.groupby("init")["seed"].nunique().min() > 1
    lines += [
        f"Measured on a fixed probe batch of {probe}, the same for every run: the standard deviation of each "
        "layer's output before its ReLU (for the last layer, the logits) and the norm of its weight gradient, "
        "right after initialisation"
        + ("; mean over seeds (min–max in brackets)." if several_seeds else " (one seed)."),
        "",
        _layer_table(summary, several_seeds),
        "",
    ]
    for row in ratios.itertuples():
        lines.append(
            f"- **{row.init}**: activation std goes from {_number(row.first_std)} at {row.first_layer} to "
            f"{_number(row.last_std)} at {row.last_layer}, a ratio of {_number(row.ratio_mean)}"
            + (f" (seeds: {_number(row.ratio_min)}–{_number(row.ratio_max)}, n={row.seeds})." if row.seeds > 1 else ".")
        )
    lines.append("")
    pair = weak_and_strong(ratios)
    if pair is None:
        measured = ratios.loc[ratios["last_std"].notna(), "init"].astype(str).tolist()
        if len(measured) < 2:
            lines.append(
                f"Only {len(measured)} init with a measured output signal ({', '.join(measured) or 'none'}): "
                "there is no other init to compare it with, so no epoch-1 comparison."
            )
        else:
            lines.append(
                "Every init sends the same signal to the output (the same logits std at initialisation): "
                "there is no weaker init, so no epoch-1 comparison."
            )
        return "\n".join(lines) + "\n"
    weak, strong = pair
    by_init = ratios.set_index("init")
    lines += [
        f"**{weak}** sends the weaker signal to the output: its logits' std at initialisation is "
        f"{_number(by_init.loc[weak, 'last_std'] / by_init.loc[strong, 'last_std'])} times {strong}'s.",
        "",
    ]
    lines += _first_epoch_lines(first_epoch_comparison(metrics_list, weak, strong, confidence), confidence)
    return "\n".join(lines) + "\n"
