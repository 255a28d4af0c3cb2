"""The learning-rate sweep and the signal analysis: hand-made metrics with known answers, then end to end."""

import re

import pytest

from fmnist_initopt import signal_analysis, sweep_analysis
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
    section = sweep_analysis.sweep_section(runs, DEFAULT_LRS, "holdout")
    assert ("ranking changed" in section) is changed
    assert ("did not change" in section) is not changed
    assert "Caveat" not in section
    assert "Caveat" in sweep_analysis.sweep_section(runs, DEFAULT_LRS, "test")


def test_lr_tokens_are_one_spelling_per_float_and_match_the_wildcard():
    for lr in (0.001, 3.0e-4, 1.0e-5, 1.0, 0.1 + 0.2, 1.0e16):
        token = lr_sweep.lr_token(lr)
        assert float(token) == lr
        assert re.fullmatch(lr_sweep.LR_TOKEN_PATTERN, token)
    assert lr_sweep.lr_token(1.0e-3) == lr_sweep.lr_token(0.001)


def test_the_signal_section_names_the_weaker_init_and_its_first_epoch():
    runs = [
        run(init, optimizer, 0.01, seed, 0.9, 0.9, epoch1_val=epoch1, signal=signal)
        for seed, wobble in ((1, 0.0), (2, 0.01), (3, -0.01))
        for init, signal, epoch1 in (("he", (1.0, 1.0, 1.0), 0.80 + wobble), ("xavier", (0.5, 0.2, 0.1), 0.60 + wobble))
        for optimizer in ("sgd", "adam")
    ]
    ratios = signal_analysis.signal_ratios(signal_analysis.init_signal_table(runs)).set_index("init")
    assert ratios.loc["xavier", "ratio_mean"] == pytest.approx(0.2)
    assert ratios.loc["he", "ratio_mean"] == pytest.approx(1.0)
    comparison = signal_analysis.first_epoch_comparison(runs, "xavier", "he", 0.95)
    assert list(comparison["verdict"]) == ["slower", "slower"]
    section = signal_analysis.signal_section(runs, 0.95)
    assert "**xavier** sends the weaker signal" in section
    assert "significantly slower in the first epoch with 2 of 2 optimizers" in section
    assert "lower with 2 of 2 optimizers" in section


def planned_rules(study, *args):
    result = study.snakemake("-n", *args)
    return result.stdout + result.stderr


def test_with_the_sweep_off_none_of_its_rules_are_planned(study):
    plan = planned_rules(study)
    assert "signal_report" in plan
    assert "train_sweep" not in plan and "lr_sweep_report" not in plan


def test_the_sweep_end_to_end_on_synthetic_data(study):
    study.write_config(
        {
            "grid": {"optimizers": ["sgd"]},
            "training": {"epochs": 1, "train_size": 200},
            "lr_sweep": {"enabled": True, "seeds": [1], "learning_rates": {"sgd": [0.001, 0.1]}},
        }
    )
    study.snakemake("--cores", "2")
    sweep_runs = sorted(p.parent.name for p in (study.root / "results" / "sweep").glob("*/metrics.json"))
    assert sweep_runs == sorted(f"{init}_sgd_lr{lr}_seed1" for init in ("he", "xavier") for lr in ("0.001", "0.1"))
    metrics = study.metrics("he_sgd_seed1")
    assert metrics["diagnostics"]["snapshot_epochs"] == [0, 1]
    for figure in ("signal_at_init.png", "signal_grad_norms.png", "lr_sweep.png"):
        assert (study.root / "results" / "figures" / figure).stat().st_size > 0
    assert "## Why: signal propagation" in (study.root / "results" / "diagnostics.md").read_text()
    section = (study.root / "results" / "lr_sweep.md").read_text()
    assert "## Learning-rate sensitivity" in section
    assert "6 runs" in section  # the 2 grid runs at the default lr reused, 4 sweep runs
    assert not (study.root / "results" / "sweep" / "he_sgd_lr0.01_seed1").exists()
    assert not list((study.root / "results" / "checkpoints").glob("*.pt"))
