"""The learning-rate sweep and the signal analysis: hand-made metrics with known answers, then end to end."""

import re

import matplotlib.pyplot as plt
import pytest
from fake_metrics import fake_metrics

from fmnist_initopt import diagnostic_figures, signal_analysis, signal_findings, sweep_analysis, sweep_findings
from fmnist_initopt import study as lr_sweep

DEFAULT_LRS = {"sgd": 0.01, "adam": 0.001}


def run(init, optimizer, lr, seed, val, test, status="completed", epoch1_val=None, signal=None):
    """The fields of a metrics.json the analyses read, nothing else."""
    return {
        "run": {"init": init, "optimizer": optimizer, "seed": seed},
        "spec": {"optimizer_kwargs": {"lr": lr}},
        "status": status,
        "history": {"val_accuracy": [epoch1_val if epoch1_val is not None else val, val]},
        "test": {"accuracy": test if status == "completed" else None},
        "diagnostics": {
            "probe_size": 8,
            "layers": ["a", "b", "c"],
            "activation_std": {layer: [value] for layer, value in zip("abc", signal or (1.0, 1.0, 1.0))},
            "weight_grad_norm": {layer: [1.0] for layer in "abc"},
        },
    }


def test_the_best_lr_is_chosen_on_validation_even_when_test_would_pick_another():
    runs = [
        run("he", "sgd", lr, seed, val, test)
        for seed in (1, 2)
        for lr, val, test in ((0.001, 0.80, 0.90), (0.01, 0.85, 0.84), (0.1, 0.70, 0.95))
    ]
    best = sweep_analysis.best_learning_rates(sweep_analysis.sweep_table(runs))
    assert best.loc[0, "best_lr"] == 0.01
    assert best.loc[0, "test_mean"] == pytest.approx(0.84)


def test_a_learning_rate_where_a_seed_diverged_is_never_chosen():
    runs = [
        run("he", "adam", 0.01, 1, 0.95, 0.95),
        run("he", "adam", 0.01, 2, 0.0, 0.0, status="diverged"),
        run("he", "adam", 0.001, 1, 0.80, 0.80),
        run("he", "adam", 0.001, 2, 0.81, 0.80),
    ]
    best = sweep_analysis.best_learning_rates(sweep_analysis.sweep_table(runs))
    assert best.loc[0, "best_lr"] == 0.001


def sweep_runs(retuned_test):
    """he+sgd leads at the default lrs; xavier+adam's other lr wins validation (test: `retuned_test`)."""
    return [
        run("he", "sgd", 0.01, 1, 0.88, 0.88),
        run("he", "sgd", 0.1, 1, 0.50, 0.50),
        run("xavier", "adam", 0.001, 1, 0.80, 0.80),
        run("xavier", "adam", 0.0001, 1, 0.90, retuned_test),
    ]


@pytest.mark.parametrize("retuned_test,changed", [(0.91, True), (0.85, False)])
def test_the_ranking_at_default_and_best_lrs_and_whether_it_changed(retuned_test, changed):
    runs = sweep_runs(retuned_test)
    ranked = sweep_analysis.rankings(sweep_analysis.sweep_table(runs), DEFAULT_LRS)
    assert sweep_analysis.ranking_changed(ranked) is changed
    assert ranked.set_index("combination").loc["xavier + adam", "best_lr"] == 0.0001
    section = sweep_findings.sweep_section(runs, DEFAULT_LRS, "holdout")
    assert ("ranking changed" in section) is changed
    assert ("did not change" in section) is not changed
    assert "Caveat" not in section
    assert "Caveat" in sweep_findings.sweep_section(runs, DEFAULT_LRS, "test")


def ladder_runs(best_lr, lrs=(0.003, 0.01, 0.03), seeds=(1,), optimizer="sgd", init="he"):
    """One pair swept over `lrs`; validation and test accuracy peak at `best_lr`."""
    return [
        run(
            init,
            optimizer,
            lr,
            seed,
            0.9 - 0.05 * abs(i - lrs.index(best_lr)),
            0.88 - 0.05 * abs(i - lrs.index(best_lr)),
        )
        for i, lr in enumerate(lrs)
        for seed in seeds
    ]


@pytest.mark.parametrize(
    "best_lr,cell,suggested",
    [
        (0.03, "no: best at the edge (0.03, the largest swept)", "[0.01, 0.03, 0.1, 0.3]"),
        (0.003, "no: best at the edge (0.003, the smallest swept)", "[0.0003, 0.001, 0.003, 0.01]"),
    ],
)
def test_a_best_lr_at_the_edge_is_flagged_with_the_range_to_sweep_next(best_lr, cell, suggested):
    runs = ladder_runs(best_lr)
    best = sweep_analysis.best_learning_rates(sweep_analysis.sweep_table(runs))
    assert best.loc[0, "best_lr"] == best_lr
    section = sweep_findings.sweep_section(runs, DEFAULT_LRS, "holdout")
    assert cell in section
    assert f"try `lr_sweep.learning_rates.sgd: {suggested}`" in section
    assert "the best learning rate of 1 of 1 pairs is not inside its swept range" in section


def test_a_best_lr_inside_the_range_is_bracketed():
    section = sweep_findings.sweep_section(ladder_runs(0.01), DEFAULT_LRS, "holdout")
    assert "| yes " in section
    assert "each optimum is bracketed" in section and "try `" not in section


@pytest.mark.parametrize(
    "swept,side,expected",
    [
        ((1e-4, 1e-3, 1e-2), "largest", [0.1, 1.0]),  # decades stay decades
        ((0.01, 0.02), "largest", [0.05, 0.1]),  # doublings go 1-2-5
        ((0.01, 0.02), "smallest", [0.002, 0.005]),
        ((0.003,), "largest", [0.01, 0.03]),  # one lr: half-decade steps
    ],
)
def test_the_next_range_continues_the_sweeps_spacing_in_round_numbers(swept, side, expected):
    assert sweep_analysis.extend_range(swept, side) == pytest.approx(expected)


def test_an_optimizer_whose_every_lr_diverged_is_told_to_go_lower():
    runs = [run("he", "sgd", lr, 1, 0.0, 0.0, status="diverged") for lr in (0.1, 1.0)]
    section = sweep_findings.sweep_section(runs, DEFAULT_LRS, "holdout")
    assert "no: every swept lr lost a seed to divergence" in section
    assert "try `lr_sweep.learning_rates.sgd: [0.001, 0.01, 0.1, 1]`" in section
    assert "2 runs, 2 diverged (he + sgd at lr 0.1: 1, he + sgd at lr 1: 1)" in section


def test_best_against_default_is_a_paired_test_on_seed_with_holm():
    # six seeds, test accuracy 5 pp higher at the best lr in every seed: exact p = 2 / 64
    runs = ladder_runs(0.03, seeds=range(1, 7))
    section = sweep_findings.sweep_section(runs, DEFAULT_LRS, "holdout")
    line = next(line for line in section.splitlines() if line.startswith("- he + sgd: "))
    assert line == "- he + sgd: +5.00 pp [5.00, 5.00], p = 0.031: different"  # a family of one: nothing to adjust
    assert "significantly for 1 of 1 retuned pairs (1 better, 0 worse)" in section
    assert "larger seed standard deviation" not in section  # the old ad-hoc rule is gone
    one_seed = sweep_findings.sweep_section(ladder_runs(0.03), DEFAULT_LRS, "holdout")
    assert "- he + sgd: +5.00 pp, untestable: only one seed" in one_seed


def test_lr_tokens_are_one_spelling_per_float_and_match_the_wildcard():
    for lr in (0.001, 3.0e-4, 1.0e-5, 1.0, 0.1 + 0.2, 1.0e16):
        token = lr_sweep.lr_token(lr)
        assert float(token) == lr
        assert re.fullmatch(lr_sweep.LR_TOKEN_PATTERN, token)
    assert lr_sweep.lr_token(1.0e-3) == lr_sweep.lr_token(0.001)


def test_the_signal_section_names_the_weaker_init_and_its_first_epoch():
    # seven seeds: the smallest exact paired p is 2 / 2**7, small enough to survive Holm over two optimizers
    runs = [
        run(init, optimizer, 0.01, seed, 0.9, 0.9, epoch1_val=epoch1, signal=signal)
        for seed, wobble in enumerate((0.0, 0.01, -0.01, 0.02, -0.02, 0.005, -0.005), start=1)
        for init, signal, epoch1 in (("he", (1.0, 1.0, 1.0), 0.80 + wobble), ("xavier", (0.5, 0.2, 0.1), 0.60 + wobble))
        for optimizer in ("sgd", "adam")
    ]
    ratios = signal_analysis.signal_ratios(signal_analysis.init_signal_table(runs)).set_index("init")
    assert ratios.loc["xavier", "ratio_mean"] == pytest.approx(0.2)
    assert ratios.loc["he", "ratio_mean"] == pytest.approx(1.0)
    comparison = signal_analysis.first_epoch_comparison(runs, "xavier", "he", 0.95)
    assert list(comparison.per_optimizer["verdict"]) == ["slower", "slower"]
    assert comparison.pooled.verdict == "different" and comparison.pooled.estimate == pytest.approx(-0.2)
    section = signal_findings.signal_section(runs, 0.95)
    assert "**xavier** sends the weaker signal" in section
    assert "xavier was significantly slower than he in the first epoch (-20.00 pp)" in section
    assert "significantly slower with 2 (sgd, adam)" in section
    assert "lower with 2 of 2 optimizers" in section
    assert "Welch" not in section


def test_three_seeds_cannot_call_a_first_epoch_difference_significant():
    # the old Welch test called this "slower"; an exact paired test on 3 pairs cannot go below p = 0.25
    runs = [
        run(init, "adam", 0.001, seed, 0.9, 0.9, epoch1_val=epoch1 + 0.01 * seed, signal=signal)
        for seed in (1, 2, 3)
        for init, signal, epoch1 in (("he", (1.0, 1.0, 1.0), 0.80), ("xavier", (0.5, 0.2, 0.1), 0.60))
    ]
    comparison = signal_analysis.first_epoch_comparison(runs, "xavier", "he", 0.95)
    assert comparison.pooled.p == pytest.approx(0.25) and comparison.pooled.unit == "seed"
    section = signal_findings.signal_section(runs, 0.95)
    assert "with 3 seeds no difference, however large, can reach significance" in section


def test_an_optimizer_that_diverged_in_epoch_1_in_every_run_leaves_the_signal_section_standing():
    # the regression: every SGD run diverged at step 1 (empty history), which used to raise ValueError
    runs = [
        fake_metrics(init, "sgd", seed, [], diverged_at=(1, 1), lr=1.0e3)
        for init in ("he", "xavier")
        for seed in (1, 2)
    ] + [fake_metrics(init, "adam", seed, [0.8 + 0.01 * seed]) for init in ("he", "xavier") for seed in (1, 2)]
    section = signal_findings.signal_section(runs, 0.95)
    assert "4 of 8 runs never finished epoch 1 (4 diverged)" in section
    for init in ("he", "xavier"):
        assert f"{init}_sgd_seed1" in section and f"{init}_sgd_seed2" in section
    sgd_row = next(line for line in section.splitlines() if line.startswith("| sgd"))
    assert "untestable: no run has a finite epoch1_val_accuracy" in sgd_row
    assert "Untestable (fewer than two complete seeds): sgd." in section


def test_sweep_runs_are_refused_by_the_first_epoch_comparison():
    runs = [run("he", "sgd", lr, 1, 0.9, 0.9) for lr in (0.01, 0.1)] + [run("xavier", "sgd", 0.01, 1, 0.9, 0.9)]
    with pytest.raises(ValueError, match="one learning rate per optimizer.*sgd"):
        signal_analysis.first_epoch_comparison(runs, "xavier", "he", 0.95)


def planned_rules(study, *args):
    result = study.snakemake("-n", *args)
    return result.stdout + result.stderr


def test_with_the_sweep_off_none_of_its_rules_are_planned(study):
    plan = planned_rules(study)
    assert "signal_report" in plan
    assert "train_sweep" not in plan and "lr_sweep_report" not in plan


def test_the_sweep_end_to_end_on_synthetic_data(finished_sweep_study):
    # he and xavier x sgd, 1 epoch, the sweep at lr 0.001 and 0.1 (conftest.SWEEP_STUDY), run once by snakemake
    study = finished_sweep_study
    sweep_runs = sorted(p.parent.name for p in (study.results / "sweep").glob("*/metrics.json"))
    assert sweep_runs == sorted(f"{init}_sgd_lr{lr}_seed1" for init in ("he", "xavier") for lr in ("0.001", "0.1"))
    metrics = study.metrics("he_sgd_seed1")
    assert metrics["diagnostics"]["snapshot_epochs"] == [0, 1]
    for figure in ("signal_at_init.png", "signal_grad_norms.png", "lr_sweep.png"):
        assert (study.results / "figures" / figure).stat().st_size > 0
    assert "## Why: signal propagation" in (study.results / "diagnostics.md").read_text()
    section = (study.results / "lr_sweep.md").read_text()
    assert "## Learning-rate sensitivity" in section
    assert "6 runs" in section  # the 2 grid runs at the default lr reused, 4 sweep runs
    assert not (study.results / "sweep" / "he_sgd_lr0.01_seed1").exists()
    assert not list((study.results / "checkpoints").glob("*.pt"))


def visible_labels(axis, which="x", minor=False):
    ticks = axis.get_xticklabels(minor=minor) if which == "x" else axis.get_yticklabels(minor=minor)
    return [label for label in ticks if label.get_visible() and label.get_text()]


def overlapping(labels, renderer) -> bool:
    boxes = [label.get_window_extent(renderer) for label in labels]
    return any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])


@pytest.mark.parametrize(
    "lrs", [[0.003, 0.01, 0.03], [0.003, 0.004, 0.006, 0.01], [0.001, 0.002, 0.003, 0.004, 0.006, 0.01, 0.02]]
)
def test_the_lr_axis_labels_each_swept_lr_plainly_and_no_label_overlaps(lrs):
    # the old axis labelled every minor tick of a sub-decade range: "3×10⁻³4×10⁻³6×10⁻³" ran together
    figure, axis = plt.subplots(figsize=(4.2, 3.8))
    axis.plot(lrs, range(len(lrs)))
    diagnostic_figures.label_lr_axis(axis, lrs)
    figure.canvas.draw()
    labels = visible_labels(axis)
    assert [label.get_text() for label in labels] == [f"{lr:g}" for lr in lrs]
    assert not visible_labels(axis, minor=True)
    assert not overlapping(labels, figure.canvas.get_renderer())
    plt.close(figure)


@pytest.mark.parametrize("values", [[0.3, 0.5], [1.28, 2.4], [0.01, 0.2, 3.0], [1e-6, 1e-3, 10.0]])
def test_a_log_axis_gets_a_few_plain_labels_that_do_not_overlap(values):
    figure, axis = plt.subplots(figsize=(5, 3))
    axis.plot(range(len(values)), values)
    diagnostic_figures.legible_log_axis(axis, values)
    figure.canvas.draw()
    labels = visible_labels(axis, "y")
    low, high = axis.get_ylim()
    assert len(labels) >= 2 and low <= min(values) and high >= max(values)
    assert all(re.fullmatch(r"[0-9.e+-]+", label.get_text()) for label in labels)  # no mathtext powers
    assert not visible_labels(axis, "y", minor=True)
    assert not overlapping(labels, figure.canvas.get_renderer())
    plt.close(figure)


def test_a_null_logits_std_leaves_that_init_unmeasured_not_the_section_broken():
    # the schema records a non-finite value as null
    runs = [fake_metrics(init, "adam", 1, [0.8]) for init in ("he", "xavier")]
    runs[1]["diagnostics"]["activation_std"]["fc2"] = [None, None]
    section = signal_findings.signal_section(runs, 0.95)
    assert "Only 1 init with a measured output signal (he)" in section
    assert "to n/a at fc2" in section
