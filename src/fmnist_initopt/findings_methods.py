"""findings.md's Methods: the design as run, the statistics and their unit, the environment, and every
hyperparameter as the runs used it (read back from the optimizer after training, booleans included)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from fmnist_initopt import stats
from fmnist_initopt.findings_conditions import unrecorded_note
from fmnist_initopt.wording import keyword_arguments, markdown_table, one_or_all, unique


def design_text(all_metrics: list[dict]) -> str:
    data = [m["data"] for m in all_metrics]
    spec = [m["spec"] for m in all_metrics]
    sizes = one_or_all(
        f"{d['train']:,} training, {d['validation']:,} validation ({d['validation_source']}), {d['test']:,} test images"
        for d in data
    )
    seeds = sorted({m["run"]["seed"] for m in all_metrics})
    return (
        f"Each (init, optimizer) combination was trained once per seed ({', '.join(map(str, seeds))}; "
        f"{len(all_metrics)} runs) on {sizes}, for {one_or_all(s['epochs'] for s in spec)} epochs with batch size "
        f"{one_or_all(s['batch_size'] for s in spec)}. The seed sets both the initial weights and the data order "
        "of every run it is used for, so the runs of one seed share their data order across inits and optimizers. "
        "Validation accuracy was measured after every epoch, test accuracy once after the last epoch, and (where "
        "the run recorded it) the training accuracy and loss by one evaluation pass over the training images "
        "after the last epoch."
    )


def statistics_text(all_metrics: list[dict], target_accuracy: float, confidence: float, correlation: str) -> str:
    """The unit, the tests, the intervals, the MDE and the best set, in one paragraph (plus the measured
    within-seed correlation that makes the seed the unit)."""
    text = (
        f"{stats.decision_rule_text(confidence)} {correlation} The interaction of init and optimizer is tested by "
        "a repeated-measures ANOVA with the seed as subject (each effect against its interaction with the seed, "
        "Greenhouse-Geisser corrected). The minimum detectable effect (MDE) is the true mean difference per seed "
        "that the sign-flip test over the study's seeds would call different with 80% power, from that test's "
        'own power (simulated or enumerated; a t approximation only where the record says so). "Best" is a '
        "set: combinations are selected on final validation accuracy and compared with the best all at once by "
        "the max-statistic permutation test within seeds (so choosing the best from the same runs is accounted "
        "for), and reported on test accuracy, which played no part in the choice; the smallest gap the test "
        "could exclude is stated with it. A combination that lost seeds to divergence cannot be best. "
        f"Per-combination intervals in the tables are {confidence:.0%} Student-t intervals of the mean over "
        "completed seeds; they describe one combination and decide nothing. Diverged runs are listed and left "
        f"out of every mean and comparison, except epochs to the target {target_accuracy:g}, where a run that "
        "never reached it counts as epochs + 1."
    )
    if any(m["data"]["validation_source"] == "test" for m in all_metrics):
        text += (
            " Here the validation set is the test set (`validation.source: test`), so the same images select and "
            "score the best: its test accuracy is optimistic."
        )
    return text


def environment_text(all_metrics: list[dict], frame: pd.DataFrame) -> str:
    env = [m["environment"] for m in all_metrics]
    epoch_seconds = [s for m in all_metrics for s in m["history"]["epoch_seconds"]]
    threads = one_or_all(e["threads"] for e in env)
    text = (
        f"Runs used {one_or_all(device_of(e) for e in env)} in {one_or_all(m.get('precision', 'fp32') for m in all_metrics)} "
        f"with {threads} thread{'' if threads == '1' else 's'} on host {one_or_all(e['host'] for e in env)}; "
        f"Python {one_or_all(e['python'] for e in env)}, PyTorch {one_or_all(e['torch'] for e in env)}, "
        f"torchvision {one_or_all(e['torchvision'] for e in env)}, Snakemake {one_or_all(e['snakemake'] for e in env)}; "
        f"code at git commit {one_or_all(e['git_commit'] or 'unknown' for e in env)}."
    )
    if epoch_seconds:
        text += (
            f" One epoch (the same images in every run) took between {min(epoch_seconds):.1f} and "
            f"{max(epoch_seconds):.1f} s of wall time across runs, depending on what else the machine was doing."
        )
    note = unrecorded_note(frame)
    return f"{text} {note}" if note else text


def device_of(environment: dict[str, Any]) -> str:
    return f"{environment['device']} ({environment['device_name']})"


def hyperparameter_table(all_metrics: list[dict]) -> str:
    """Inits as requested and every optimizer setting as read back from the optimizer after training: numbers,
    booleans (nesterov, amsgrad, maximize, ...) and the rest, so two configurations that differ only in a
    switch get different rows."""
    rows = []
    for kind in ("init", "optimizer"):
        for name in unique(m["run"][kind] for m in all_metrics):
            runs = [m for m in all_metrics if m["run"][kind] == name]
            if kind == "init":
                setting = (f"{m['spec']['init_function']}({keyword_arguments(m['spec']['init_kwargs'])})" for m in runs)
            else:
                setting = (f"{m['spec']['optimizer_class']}({keyword_arguments(m['hyperparameters'])})" for m in runs)
            rows.append({"kind": kind, "name": name, "as used": one_or_all(setting)})
    return markdown_table(rows)


def relative(path: str | Path, start: str | Path) -> str:
    return Path(os.path.relpath(Path(path), Path(start).parent)).as_posix()
