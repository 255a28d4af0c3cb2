"""findings.md's Generalization section: the brief's claim that "adaptive optimizers ... may generalize
differently", answered for this study.

The generalization gap of a run is its final training accuracy, measured by one evaluation pass over the
training images after the last epoch (`train_evaluation`, not the running average during the epoch), minus its
test accuracy; the loss gap is the test loss minus that training loss. Both are compared with the report's one
decision rule (the seed as the unit): between inits, pooled and per optimizer, and between optimizers, with
each adaptive optimizer (one that scales each parameter's step by its gradient history) against the
non-adaptive reference. Runs recorded before the training evaluation existed have no gap, and the section
says so instead of guessing one.
"""

from __future__ import annotations

import pandas as pd

from fmnist_initopt import levels
from fmnist_initopt.aggregate import combination_label
from fmnist_initopt.findings_comparisons import RESULT, comparison_rows, comparison_text, detectable, factor_evidence
from fmnist_initopt.wording import count, listing, markdown_table, mean_with_interval, names

GAP = "generalization_gap"  # training minus test accuracy: larger = the test images fare worse
LOSS_GAP = "loss_gap"  # test minus training loss
MEASURES = {GAP: ("accuracy gap (training − test)", "pp", 100.0), LOSS_GAP: ("loss gap (test − training)", "", 1.0)}


def unrecorded(all_metrics: list[dict]) -> int:
    """Runs whose metrics.json has no training evaluation (written before it existed)."""
    return sum("train_evaluation" not in m for m in all_metrics)


def gap_table(frame: pd.DataFrame, confidence: float) -> str:
    rows = []
    for (init, optimizer), runs in frame.groupby(["init", "optimizer"], sort=False):
        rows.append(
            {
                "init + optimizer": combination_label(init, optimizer),
                "training accuracy (final pass)": mean_with_interval(runs["train_accuracy"], confidence, limits=(0, 1)),
                "test accuracy": mean_with_interval(runs["test_accuracy"], confidence, limits=(0, 1)),
                "accuracy gap (pp)": mean_with_interval(runs[GAP], confidence, digits=2, scale=100.0),
                "training loss": mean_with_interval(runs["train_loss_final"], confidence),
                "test loss": mean_with_interval(runs["test_loss"], confidence),
                "loss gap": mean_with_interval(runs[LOSS_GAP], confidence),
            }
        )
    return markdown_table(rows)


def adaptive_answer(frame: pd.DataFrame, confidence: float) -> str:
    """The sentence on the brief's claim: each adaptive optimizer's accuracy gap against the non-adaptive one."""
    head = "**Do adaptive optimizers generalize differently here?**"
    measured = frame[frame[GAP].notna()]
    kinds = measured.drop_duplicates("optimizer").set_index("optimizer")["adaptive"].astype(bool)
    adaptive, plain = list(kinds.index[kinds]), list(kinds.index[~kinds])
    if not adaptive or not plain:
        trained = "adaptive" if adaptive else "non-adaptive"
        which = listing(kinds.index) or "no optimizer"
        return (
            f"{head} This study cannot say: only {trained} optimizers ({which}) have a measured gap, so there is "
            "no adaptive against non-adaptive comparison."
        )
    reference = plain[0]
    found = levels.compare_levels(
        measured, GAP, "optimizer", confidence, over=("init",), reference=reference, higher_is_better=False
    )
    tested = [c for c in found.comparisons if c.level in adaptive]
    if not tested:
        return f"{head} Untestable: {found.status}."
    phrases = [
        f"{c.level} − {reference}: {comparison_text(c, mde=detectable(c, len(found.comparisons), len(found.means)))}"
        for c in tested
    ]
    different = [c for c in tested if c.verdict == "different"]
    if different:
        direction = listing(f"{c.level} ({'larger' if c.estimate > 0 else 'smaller'} gap)" for c in different)
        verdict = f"**Yes, for {direction}**: the accuracy gap differs from {reference}'s (non-adaptive)"
    elif all(c.verdict == "untestable" for c in tested):
        verdict = f"**Untestable**: no adaptive optimizer could be compared with {reference}"
    else:
        verdict = (
            f"**No difference detected** between the accuracy gaps of {names(adaptive)} (adaptive) and "
            f"**{reference}** (non-adaptive); not detected is not evidence that they generalize alike"
        )
    return f"{head} {verdict}. " + "; ".join(phrases) + "."


def generalization_section(frame: pd.DataFrame, all_metrics: list[dict], confidence: float) -> str:
    parts = ["## Generalization"]
    missing = unrecorded(all_metrics)
    if missing == len(all_metrics):
        parts.append(
            "**Not measured**: no run recorded a final evaluation over its training images (`train_evaluation` "
            "in metrics.json; these runs were written before it existed), so the generalization gap cannot be "
            "reported and the brief's claim that adaptive optimizers may generalize differently is not answered "
            "here. Retrain the runs to measure it."
        )
        return "\n\n".join(parts)
    parts.append(
        "The generalization gap of a run: its final training accuracy (one evaluation pass over the training "
        "images after the last epoch) minus its test accuracy, and its test loss minus that training loss; "
        "larger means the test images fare worse than the training images. Means over completed seeds with "
        f"descriptive {confidence:.0%} intervals."
        + (
            f" {count(missing, 'run')} of {len(all_metrics)} recorded no training evaluation (older metrics) and are left out."
            if missing
            else ""
        )
    )
    if frame[GAP].notna().sum() == 0:
        parts.append("No completed run has a training evaluation, so there is no gap to compare.")
        return "\n\n".join(parts)
    parts += [gap_table(frame, confidence), adaptive_answer(frame, confidence)]
    parts.append(init_gap_table(frame, confidence))
    return "\n\n".join(part for part in parts if part)


def init_gap_table(frame: pd.DataFrame, confidence: float) -> str:
    if frame["init"].nunique() < 2:
        return "Only one init was trained, so no init comparison of the gap is possible."
    rows = []
    for measure, (label, unit, scale) in MEASURES.items():
        found = factor_evidence(frame, measure, "init", confidence, higher_is_better=False)
        if found.pooled.reference is None:
            rows.append({"measure": label, "optimizer": "", "difference": "", RESULT: found.pooled.status})
            continue
        rows += comparison_rows(found, unit, scale, label)
    return (
        "Init differences in the gap, the seed as the unit (pooled over the optimizers, then per optimizer; "
        "each init against the one with the smallest gap):\n\n" + markdown_table(rows)
    )
