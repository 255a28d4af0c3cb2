"""The findings' newer sections on hand-made metrics: the generalization gap and the brief's claim about adaptive
optimizers, precisions and devices mixed within a combination, and every optimizer setting as used."""

from __future__ import annotations

import re

import numpy as np
from fake_metrics import fake_metrics

from fmnist_initopt.aggregate import summarize_runs
from fmnist_initopt.findings import findings_markdown

CONFIDENCE, TARGET = 0.95, 0.85


def report(runs) -> str:
    return findings_markdown(summarize_runs(runs, TARGET), runs, TARGET, CONFIDENCE, {}, {}, "results/x/findings.md")


def section(text: str, heading: str) -> str:
    return text.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]


def gap_study(adam_gap: float, seeds: int = 6, rng_seed: int = 1, **changes) -> list[dict]:
    """he/xavier x sgd/adam; the training accuracy (final pass) is the test accuracy plus 2 pp, plus `adam_gap`
    under Adam, with noise; the test accuracies alike."""
    rng = np.random.default_rng(rng_seed)
    runs = []
    for seed in range(1, seeds + 1):
        for optimizer in ("sgd", "adam"):
            for init in ("he", "xavier"):
                test = 0.90 + rng.normal(0, 0.002)
                train = test + 0.02 + adam_gap * (optimizer == "adam") + rng.normal(0, 0.002)
                runs.append(
                    fake_metrics(
                        init, optimizer, seed, [0.85, test], test_accuracy=test, train_accuracy=train, **changes
                    )
                )
    return runs


# ---------------------------------------------------------------------------------------------- generalization


def test_an_adaptive_optimizer_that_overfits_more_is_named_with_its_gap():
    text = section(report(gap_study(adam_gap=0.03)), "Generalization")
    assert "**Do adaptive optimizers generalize differently here?** **Yes, for adam (larger gap)**" in text
    estimate = float(re.search(r"adam − sgd: \+(\d+\.\d+) pp", text).group(1))
    assert 2.5 < estimate < 3.5  # the 3 pp built in
    assert re.search(r"\| xavier \+ adam +\| 0\.9\d+ \[.*\| 5\.\d\d \[", text)  # 2 + 3 pp, in pp


def test_no_gap_difference_is_said_as_not_detected_not_as_equal():
    text = section(report(gap_study(adam_gap=0.0)), "Generalization")
    assert "**No difference detected** between the accuracy gaps of **adam** (adaptive) and **sgd**" in text
    assert "not evidence that they generalize alike" in text


def test_runs_without_a_training_evaluation_are_said_so_never_guessed():
    old = gap_study(adam_gap=0.03, with_train_evaluation=False)
    text = report(old)
    assert "**Not measured**: no run recorded a final evaluation over its training images" in text
    mixed = gap_study(adam_gap=0.03)
    for run in mixed[:4]:
        del run["train_evaluation"]
    assert "4 runs of 24 recorded no training evaluation (older metrics) and are left out" in report(mixed)


def test_only_adaptive_optimizers_cannot_answer_the_claim():
    runs = [r for r in gap_study(adam_gap=0.03) if r["run"]["optimizer"] == "adam"]
    text = section(report(runs), "Generalization")
    assert "This study cannot say: only adaptive optimizers (adam) have a measured gap" in text


# ---------------------------------------------------------------------------------------------- precisions, devices


def conditions_study(changed: dict) -> list[dict]:
    """he/xavier x adam x 3 seeds, 2 epochs; `changed` maps a run id to its per-epoch precisions and devices."""
    runs = []
    for seed in (1, 2, 3):
        for init in ("he", "xavier"):
            run_id = f"{init}_adam_seed{seed}"
            runs.append(fake_metrics(init, "adam", seed, [0.8, 0.86 + seed / 100], **changed.get(run_id, {})))
    return runs


def test_uniform_precision_and_device_say_nothing():
    text = report(conditions_study({}))
    assert "mixes" not in text and "did not record the precision" not in text


def test_a_run_that_changed_precision_between_epochs_is_named():
    text = report(conditions_study({"he_adam_seed3": {"precisions": ["bf16", "fp32"]}}))
    problems = section(text, "Poor results, missed targets and divergence")
    assert "**he + adam** mixes precisions across its runs: fp32 (seeds 1, 2) and bf16 and fp32 (seed 3)" in problems
    assert "1 run changed precisions between epochs (seed 3)" in problems
    assert "xavier + adam" not in problems


def test_runs_of_one_combination_on_different_devices_are_named():
    text = report(conditions_study({"xavier_adam_seed2": {"devices": ["cuda", "cuda"]}}))
    problems = section(text, "Poor results, missed targets and divergence")
    assert "**xavier + adam** mixes devices across its runs: cpu (seeds 1, 3) and cuda (seed 2)" in problems


def test_old_runs_without_per_epoch_records_are_said_in_the_methods():
    runs = conditions_study({})
    for run in runs:
        del run["history"]["precision"], run["history"]["device"]
    text = report(runs)
    assert "6 runs of 6 did not record the precision and device of each epoch" in section(text, "Methods")
    assert "mixes" not in text


# ---------------------------------------------------------------------------------------------- hyperparameters


def test_boolean_and_other_settings_tell_sgd_from_nesterov():
    runs = [fake_metrics("he", optimizer, 1, [0.8, 0.9]) for optimizer in ("sgd", "nesterov")]
    runs.append(fake_metrics("he", "adam", 1, [0.8, 0.9]))
    runs[-1]["hyperparameters"].update(amsgrad=True, maximize=False, capturable=False)
    table = section(report(runs), "Methods").split("| kind", 1)[1]
    sgd = next(line for line in table.splitlines() if "| sgd " in line)
    nesterov = next(line for line in table.splitlines() if "| nesterov " in line)
    assert "nesterov=true" in nesterov and "nesterov" not in sgd.split("|")[3]
    assert sgd.split("|")[3].strip() != nesterov.split("|")[3].strip()
    adam = next(line for line in table.splitlines() if "| adam " in line)
    assert "amsgrad=true" in adam and "maximize=false" in adam and "capturable=false" in adam


def test_the_methods_count_threads_in_the_singular_when_every_run_had_one():
    runs = gap_study(0.0, seeds=2)
    assert "with 2 threads on host testhost" in section(report(runs), "Methods")
    for run in runs:
        run["environment"]["threads"] = 1
    assert "with 1 thread on host testhost" in section(report(runs), "Methods")
