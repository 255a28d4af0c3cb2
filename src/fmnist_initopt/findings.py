"""results/findings.md: the study's answer, every sentence filled in from the aggregated numbers.

A difference is called a difference only when the data can tell it apart from seed-to-seed noise:
the two combinations' confidence intervals are disjoint and Welch's t-test gives p < 1 - confidence.
With one seed per combination there is no spread, so the report says so instead of printing intervals.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd
from scipy import stats

from fmnist_initopt.aggregate import METRICS, combination_label, distinguishable, values_of, welch

LABELS = {
    "test_accuracy": "final test accuracy",
    "best_val_accuracy": "best validation accuracy",
    "final_val_accuracy": "final validation accuracy",
    "epochs_to_target": "epochs to target",
    "seconds_to_target": "seconds to target",
    "training_seconds": "training time (s)",
}
DECIMALS = {"accuracy": 4, "epochs": 2, "seconds": 1}
SUMMARY_METRICS = ["test_accuracy", "final_val_accuracy", "epochs_to_target", "seconds_to_target", "training_seconds"]
SUGGESTED_LR_FACTOR = 10


def number(metric: str, value: float) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    decimals = next(d for key, d in DECIMALS.items() if key in metric)
    return f"{value:.{decimals}f}"


def signed(metric: str, value: float) -> str:
    text = number(metric, value)
    return text if text.startswith("-") or text == "n/a" else f"+{text}"


def has_spread(combinations: pd.DataFrame) -> bool:
    """Whether any combination has at least two completed seeds, i.e. whether intervals exist at all."""
    return bool((combinations["n_completed"] >= 2).any())


def estimate(row: pd.Series, metric: str) -> str:
    """Mean, with its interval when there is one; 'never reached (0/n)' for a target never met."""
    mean = row[f"{metric}_mean"]
    if math.isnan(mean):
        if metric.endswith("_to_target") and row["n_completed"] > 0:
            return f"never reached (0/{row['n_seeds']})"
        return "n/a (diverged)" if row["n_completed"] == 0 else "n/a"
    text = number(metric, mean)
    low, high = row[f"{metric}_ci_low"], row[f"{metric}_ci_high"]
    if not math.isnan(low):
        text += f" [{number(metric, low)}, {number(metric, high)}]"
    if metric.endswith("_to_target") and row["n_reached_target"] < row["n_seeds"]:
        text += f" ({row['n_reached_target']}/{row['n_seeds']} reached)"
    return text


def summary_table(combinations: pd.DataFrame, confidence: float) -> str:
    interval = f" (mean [{confidence:.0%} CI])" if has_spread(combinations) else ""
    table = pd.DataFrame(
        {
            "init + optimizer": combinations["combination"],
            "seeds (completed / diverged)": [
                f"{row.n_completed} / {row.n_diverged}" for row in combinations.itertuples(index=False)
            ],
            **{
                f"{LABELS[metric]}{interval}": [estimate(row, metric) for _, row in combinations.iterrows()]
                for metric in SUMMARY_METRICS
            },
        }
    )
    return table.to_markdown(index=False, disable_numparse=True)


def ranked(combinations: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Combinations with a value, best first. For the *_to_target metrics a combination where more of
    its seeds reached the target ranks above one that is faster on fewer seeds."""
    candidates = combinations[combinations[f"{metric}_mean"].notna()].copy()
    ascending = not METRICS[metric]
    keys, orders = [f"{metric}_mean"], [ascending]
    if metric.endswith("_to_target"):
        candidates["reached_share"] = candidates["n_reached_target"] / candidates["n_seeds"]
        keys, orders = ["reached_share", *keys], [False, *orders]
    return candidates.sort_values(keys, ascending=orders, kind="stable")


def compare_pair(
    summary: pd.DataFrame, first: pd.Series, second: pd.Series, metric: str, confidence: float
) -> dict[str, Any]:
    a = values_of(summary, first["init"], first["optimizer"], metric)
    b = values_of(summary, second["init"], second["optimizer"], metric)
    test = welch(a, b, confidence)
    interval = lambda row: (row[f"{metric}_ci_low"], row[f"{metric}_ci_high"])  # noqa: E731
    test["distinguishable"] = distinguishable(a, b, interval(first), interval(second), confidence)
    return test


def best_sentence(summary: pd.DataFrame, combinations: pd.DataFrame, metric: str, confidence: float) -> str:
    order = ranked(combinations, metric)
    direction = "highest" if METRICS[metric] else "lowest"
    if order.empty:
        reason = "no completed run reached the target" if metric.endswith("_to_target") else "every run diverged"
        return f"**{LABELS[metric].capitalize()}:** no combination has a value ({reason})."
    best = order.iloc[0]
    heading = f"**{LABELS[metric].capitalize()}** ({direction} is best)"
    tied = order[
        (order[f"{metric}_mean"] == best[f"{metric}_mean"])
        & (order["n_reached_target"] / order["n_seeds"] == best["n_reached_target"] / best["n_seeds"])
    ]
    if len(tied) > 1:
        names = ", ".join(f"**{name}**" for name in tied["combination"])
        return f"{heading}: {len(tied)} combinations tie at {estimate(best, metric)}: {names}; *not distinguishable*."
    text = f"{heading}: **{best['combination']}** with {estimate(best, metric)}"
    if len(order) == 1:
        return text + "; no other combination has a value to compare with."
    runner_up = order.iloc[1]
    text += f"; runner-up **{runner_up['combination']}** with {estimate(runner_up, metric)}"
    test = compare_pair(summary, best, runner_up, metric, confidence)
    difference = signed(metric, test["difference"])
    if test["distinguishable"] is None:
        return text + (
            f". Difference {difference}: *not distinguishable*, with fewer than two completed seeds "
            "no uncertainty can be estimated."
        )
    detail = (
        f"Difference {difference}, the same in every seed"
        if test["exact"]
        else f"Difference {difference} [{number(metric, test['ci_low'])}, {number(metric, test['ci_high'])}], "
        f"Welch p = {test['p_value']:.3g}"
    )
    verdict = "a real difference at this confidence" if test["distinguishable"] else "*not distinguishable*"
    return text + f". {detail}: {verdict}."


def verdict(test: dict[str, float], higher_is_better: bool, confidence: float, init: str) -> str:
    """Whether `init` (the first of the pair) helps, hurts, or cannot be told apart from the other."""
    if math.isnan(test["p_value"]):
        return "not testable (fewer than two seeds)"
    if test["exact"] and test["difference"] == 0:
        return "no difference (same value in every seed)"
    if test["p_value"] >= 1 - confidence:
        return "within noise"
    better = test["difference"] > 0 if higher_is_better else test["difference"] < 0
    return f"{init} helps" if better else f"{init} hurts"


def init_effects(summary: pd.DataFrame, combinations: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """Per optimizer and per pair of inits (grid order), init A minus init B in accuracy and epochs-to-target."""
    inits = list(dict.fromkeys(combinations["init"]))
    rows = []
    for optimizer in dict.fromkeys(combinations["optimizer"]):
        for a, b in itertools.combinations(inits, 2):
            for metric in ("test_accuracy", "epochs_to_target"):
                values_a = values_of(summary, a, optimizer, metric)
                values_b = values_of(summary, b, optimizer, metric)
                test = welch(values_a, values_b, confidence)
                row = {
                    "optimizer": optimizer,
                    "comparison": f"{a} − {b}",
                    "metric": LABELS[metric],
                    "difference": signed(metric, test["difference"]),
                    f"{confidence:.0%} CI (Welch)": (
                        "n/a"
                        if math.isnan(test["ci_low"])
                        else f"[{number(metric, test['ci_low'])}, {number(metric, test['ci_high'])}]"
                    ),
                    "p": _p_text(test),
                    "verdict": verdict(test, METRICS[metric], confidence, a),
                }
                if metric == "epochs_to_target":
                    row.update(_reach_comparison(summary, a, b, optimizer, confidence))
                    row["seeds reaching target"] = (
                        f"{a}: {_reached(summary, a, optimizer)}, {b}: {_reached(summary, b, optimizer)}"
                    )
                else:
                    row["seeds reaching target"] = ""
                rows.append(row)
    return pd.DataFrame(rows)


def _p_text(test: dict[str, Any]) -> str:
    if test["exact"]:
        return "n/a (same value in every seed)"
    return "n/a" if math.isnan(test["p_value"]) else f"{test['p_value']:.3g}"


def _reach_counts(summary: pd.DataFrame, init: str, optimizer: str) -> tuple[int, int]:
    """Seeds that reached the target and seeds that did not (a diverged run did not)."""
    runs = summary[(summary["init"] == init) & (summary["optimizer"] == optimizer)]
    reached = int(runs["reached_target"].sum())
    return reached, len(runs) - reached


def _reached(summary: pd.DataFrame, init: str, optimizer: str) -> str:
    reached, missed = _reach_counts(summary, init, optimizer)
    return f"{reached}/{reached + missed}"


def _reach_comparison(summary: pd.DataFrame, a: str, b: str, optimizer: str, confidence: float) -> dict[str, str]:
    """When an init never reached the target there are no epochs to compare; what differs is how many seeds
    reached it, tested with Fisher's exact test. Empty when both inits have epochs to compare."""
    counts_a, counts_b = _reach_counts(summary, a, optimizer), _reach_counts(summary, b, optimizer)
    if counts_a[0] and counts_b[0]:
        return {}
    if not counts_a[0] and not counts_b[0]:
        return {"verdict": "neither reached the target"}
    p_value = stats.fisher_exact([counts_a, counts_b]).pvalue
    only = a if counts_a[0] else b
    if p_value >= 1 - confidence:
        outcome = "within noise"
    else:
        outcome = f"{a} helps" if only == a else f"{a} hurts"
    return {"p": f"{p_value:.3g} (Fisher, seeds reaching)", "verdict": f"{outcome} (only {only} reached the target)"}


def problems(summary: pd.DataFrame, combinations: pd.DataFrame, target_accuracy: float, confidence: float) -> list[str]:
    lines = []
    diverged = summary[summary["status"] == "diverged"]
    for run in diverged.itertuples(index=False):
        lines.append(
            f"- **{run.run_id} diverged** (loss not finite at epoch {int(run.diverged_epoch)}, step "
            f"{int(run.diverged_step)}, learning rate {run.lr:g}); excluded from every mean above. "
            f"Suggested fix: lower `optimizers.{run.optimizer}.kwargs.lr` by {SUGGESTED_LR_FACTOR}x, "
            f"to {run.lr / SUGGESTED_LR_FACTOR:g}."
        )
    completed = summary[summary["status"] == "completed"]
    if len(completed) and not completed["reached_target"].any():
        closest = completed.loc[completed["best_val_accuracy"].idxmax()]
        lines.append(
            f"- **No completed run reached validation accuracy {target_accuracy:g}** within "
            f"{int(completed['epochs'].max())} epochs; the closest was {closest['run_id']} with "
            f"{number('accuracy', closest['best_val_accuracy'])}. Suggested fix: more epochs (`training.epochs`), or a "
            "target the study can reach (`report.target_accuracy`), so that convergence speed can be compared."
        )
        completed = completed.iloc[0:0]
    for (init, optimizer), runs in completed.groupby(["init", "optimizer"], sort=False):
        missed = runs[~runs["reached_target"]]
        if len(missed):
            best = runs["best_val_accuracy"].max()
            lines.append(
                f"- **{combination_label(init, optimizer)}**: {len(missed)} of {len(runs)} completed seeds never reached "
                f"validation accuracy {target_accuracy:g} within {int(runs['epochs'].max())} epochs (best: "
                f"{number('accuracy', best)}). Suggested fix: more epochs (`training.epochs`) or a tuned "
                f"`optimizers.{optimizer}.kwargs.lr` (now {runs['lr'].iloc[0]:g})."
            )
    lines.extend(_poor_accuracy(summary, combinations, confidence))
    return lines or [
        "- None: no run diverged, every completed run reached the target, and no combination is "
        "distinguishable from the best in final test accuracy."
    ]


def _poor_accuracy(summary: pd.DataFrame, combinations: pd.DataFrame, confidence: float) -> list[str]:
    order = ranked(combinations, "test_accuracy")
    if len(order) < 2:
        return []
    best = order.iloc[0]
    if not has_spread(combinations):
        worst = order.iloc[-1]
        return [
            f"- Lowest final test accuracy: **{worst['combination']}** ({estimate(worst, 'test_accuracy')}, "
            f"best {number('accuracy', best['test_accuracy_mean'])}); with one seed per combination it cannot be "
            "called worse than seed-to-seed noise."
        ]
    lines = []
    for _, row in order.iloc[1:].iterrows():
        test = compare_pair(summary, best, row, "test_accuracy", confidence)
        if test["distinguishable"]:
            lines.append(
                f"- **{row['combination']}** performed worse than **{best['combination']}** in final test accuracy: "
                f"{signed('accuracy', -test['difference'])} [{number('accuracy', -test['ci_high'])}, "
                f"{number('accuracy', -test['ci_low'])}], Welch p = {_p_text(test)}."
            )
    return lines


def unique(values) -> list:
    seen = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen


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
    paragraph = (
        f"Each (init, optimizer) combination was trained once per seed ({', '.join(map(str, seeds))}; "
        f"{len(all_metrics)} runs) on {sizes}, for {_one_or_all([s['epochs'] for s in spec])} epochs with batch size "
        f"{_one_or_all([s['batch_size'] for s in spec])}. The seed sets both the initial weights and the data order. "
        f"Validation accuracy was measured after every epoch and test accuracy once, after the last epoch. "
        f"Epochs to target is the first epoch whose validation accuracy reached {target_accuracy:g}; seconds to target "
        f"is the wall time of the epochs up to and including it (training plus validation). Intervals are "
        f"{confidence:.0%} Student-t intervals of the mean over seeds; differences use Welch's t-test and are called "
        f"real only when p < {1 - confidence:.2g} and the two intervals are disjoint. Diverged runs are reported but "
        f"left out of all means. Runs used {_one_or_all([device_of(e) for e in env])} with "
        f"{_one_or_all([e['threads'] for e in env])} threads on host {_one_or_all([e['host'] for e in env])}; "
        f"Python {_one_or_all([e['python'] for e in env])}, PyTorch {_one_or_all([e['torch'] for e in env])}, "
        f"torchvision {_one_or_all([e['torchvision'] for e in env])}, Snakemake {_one_or_all([e['snakemake'] for e in env])}; "
        f"code at git commit {_one_or_all([e['git_commit'] or 'unknown' for e in env])}. "
        + (
            f"One epoch (the same images in every run) took between {min(epoch_seconds):.1f} and "
            f"{max(epoch_seconds):.1f} s across runs; wall times depend on the machine and on its load at the time."
            if epoch_seconds
            else ""
        )
    )
    return paragraph + "\n\n" + hyperparameter_table(all_metrics)


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
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


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


def findings_markdown(
    summary: pd.DataFrame,
    combinations: pd.DataFrame,
    all_metrics: list[dict],
    target_accuracy: float,
    confidence: float,
    figures: dict[str, str],
    tables: dict[str, str],
    output: str | Path,
    extra_sections: tuple[str, ...] = (),
) -> str:
    """The whole document. `figures` and `tables` map captions to paths, linked relative to `output`;
    `extra_sections` (Markdown, e.g. the diagnostics') go before the figures."""
    spread = has_spread(combinations)
    noise_note = (
        f"Values are means over completed seeds with {confidence:.0%} confidence intervals in brackets."
        if spread
        else "**One seed per combination: no uncertainty can be estimated.** The values are single runs, and no difference "
        "between them can be told apart from seed-to-seed noise; rerun with several `grid.seeds` to test them."
    )
    effects = init_effects(summary, combinations, confidence)
    inits = unique(combinations["init"])
    sections = [
        "<!-- Generated by workflow/scripts/findings.py from results/runs/*/metrics.json. Do not edit: "
        "rerun Snakemake to regenerate. -->",
        "# Findings: weight initialisation × optimizer on FashionMNIST",
        "*Generated from the runs' metrics; every number and verdict below is computed, none is typed in.*",
        "## Summary",
        noise_note,
        summary_table(combinations, confidence),
        "Tables: " + ", ".join(f"[{caption}]({relative(path, output)})" for caption, path in tables.items()) + ".",
        "## Best combination",
        "\n".join(
            f"- {best_sentence(summary, combinations, metric, confidence)}"
            for metric in ("test_accuracy", "epochs_to_target", "seconds_to_target", "training_seconds")
        ),
        "## Initialisation × optimizer",
        (
            f"For each optimizer, the difference between inits ({' − '.join(inits[:2])}"
            f"{' and every other pair' if len(inits) > 2 else ''}) in final test accuracy (higher is better) and "
            "in epochs to target (lower is better), over completed seeds; the verdict says whether the first init of the "
            f"pair helps or hurts at {confidence:.0%} confidence (Welch's t-test) or is within seed noise."
            if len(inits) > 1
            else "Only one init was trained, so no init comparison is possible."
        ),
        effects.to_markdown(index=False, disable_numparse=True) if len(effects) else "",
        "## Poor results, missed targets and divergence",
        "\n".join(problems(summary, combinations, target_accuracy, confidence)),
        *(section.strip() for section in extra_sections),
        "## Figures",
        "\n\n".join(f"![{caption}]({relative(path, output)})" for caption, path in figures.items()),
        "## Methods",
        methods(all_metrics, target_accuracy, confidence),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"
