"""Cost measured, not scheduled: every run records what it cost, and rule step_cost times one step of
every combination interleaved in one process."""

import csv
import io
import itertools
import math

import jsonschema
import torch
from conftest import metrics_schema, spec, synthetic_splits
from test_open_grid import full_config

from fmnist_initopt import cost, environment, training

COST_FIELDS = {
    "process_cpu_seconds",
    "median_step_seconds",
    "steps_timed",
    "load_average_start",
    "load_average_end",
    "cpu_count",
    "threads",
    "seconds_before_first_step",
}


def cost_schema():
    return metrics_schema()["properties"]["cost"]


def test_every_run_records_its_cost_with_a_sample_of_timed_steps():
    splits, run = synthetic_splits(), spec(epochs=2)
    metrics = training.train_run(run, splits, torch.device("cpu"))
    recorded = metrics["cost"]
    assert set(recorded) == COST_FIELDS
    jsonschema.validate(recorded, cost_schema())
    steps_per_epoch = math.ceil(len(splits.train_y) / run.batch_size)
    timed_per_epoch = math.ceil(steps_per_epoch / training.STEP_TIMING_EVERY)
    assert recorded["steps_timed"] == run.epochs * timed_per_epoch
    assert 0 < recorded["median_step_seconds"] < metrics["training_seconds"]
    assert recorded["process_cpu_seconds"] > 0
    assert recorded["threads"] == torch.get_num_threads() and recorded["cpu_count"] >= 1
    # this process (pytest) started before the run began training, and not long before this check
    assert 0 < recorded["seconds_before_first_step"] < environment.seconds_since_process_start()


def test_only_every_fiftieth_step_is_timed():
    timer = training.StepTimer(torch.device("cpu"))
    assert [step for step in range(160) if timer.wants(step)] == [0, 50, 100, 150]


def test_a_resumed_run_adds_its_cost_to_what_the_checkpoint_carried():
    before = {"process_cpu_seconds": 12.5, "step_seconds": [0.01, 0.03], "load_average_start": 3.0}
    resumed = training.RunCost(training.StepTimer(torch.device("cpu")))
    resumed.resume(before)
    resumed.timer.seconds.append(0.02)
    recorded = resumed.record()
    assert recorded["process_cpu_seconds"] >= 12.5
    assert (recorded["steps_timed"], recorded["median_step_seconds"]) == (3, 0.02)
    assert recorded["load_average_start"] == 3.0
    assert resumed.state()["step_seconds"] == [0.01, 0.03, 0.02]


class FakeClock:
    """Time advances only when a candidate runs: each call of candidate k takes k + 1 seconds."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_steps_are_timed_round_robin_with_a_rotating_start_and_the_median_is_taken():
    clock, calls = FakeClock(), []

    def candidate(key, seconds):
        def call():
            calls.append(key)
            clock.now += seconds

        return call

    candidates = {"a": candidate("a", 1.0), "b": candidate("b", 2.0), "c": candidate("c", 3.0)}
    medians = cost.interleaved_medians(candidates, steps=2, repeats=3, clock=clock)
    assert medians == {"a": 1.0, "b": 2.0, "c": 3.0}
    warm_up, rounds = calls[:3], calls[3:]
    assert warm_up == ["a", "b", "c"]
    firsts = [rounds[i] for i in range(0, len(rounds), 6)]
    assert firsts == ["a", "b", "c"]  # each round starts one candidate later
    for start in range(0, len(rounds), 6):
        assert sorted(rounds[start : start + 6]) == ["a", "a", "b", "b", "c", "c"]  # everyone in every round


def test_step_costs_give_one_row_per_grid_combination():
    config = full_config(step_cost={"steps": 2, "repeats": 2}, device="cpu")
    config["grid"].update(inits=["he", "xavier"], optimizers=["sgd", "adam"])
    config["training"]["batch_size"] = 8
    rows = cost.measure_step_costs(cost.plan(config))
    assert [(row["init"], row["optimizer"]) for row in rows] == list(
        itertools.product(["he", "xavier"], ["sgd", "adam"])
    )
    assert all(row["median_step_seconds"] > 0 and row["repeats"] == 2 and row["cpu_model"] for row in rows)
    table = list(csv.DictReader(io.StringIO(cost.csv_text(rows))))
    assert tuple(table[0]) == cost.COLUMNS == ("init", "optimizer", "median_step_seconds", "repeats", "cpu_model")
    assert len(table) == 4


def test_the_step_cost_plan_changes_with_what_a_step_costs_and_nothing_else():
    def plan_with(section=None, key=None, value=None):
        config = full_config(step_cost={"steps": 20, "repeats": 5}, device="auto")
        if section:
            config[section][key] = value
        return cost.plan(config)

    base = plan_with()
    assert plan_with("grid", "seeds", [7, 8]) == base
    assert plan_with("training", "epochs", 3) == base
    assert plan_with("report", "target_accuracy", 0.5) == base
    assert plan_with("training", "batch_size", 32) != base
    assert plan_with("training", "precision", "bf16") != base
    assert plan_with("grid", "optimizers", ["sgd"]) != base


def test_the_study_writes_step_costs_and_refuses_prepared_data_changed_on_disk(finished_copy):
    # the session's tiny study (he, xavier x adam, rmsprop, sgd), run once by `snakemake --cores 2`
    study = finished_copy
    table = list(csv.DictReader((study.results / "step_cost.csv").open()))
    combinations = itertools.product(["he", "xavier"], ["adam", "rmsprop", "sgd"])
    assert sorted((row["init"], row["optimizer"]) for row in table) == list(combinations)
    metrics = study.metrics("he_adam_seed1")
    assert metrics["precision"] == "fp32" and set(metrics["cost"]) == COST_FIELDS

    (array,) = (study.root / "data" / "prepared").glob("*/train-images-idx3-ubyte.npy")
    content = bytearray(array.read_bytes())
    content[-1] ^= 0xFF
    array.write_bytes(bytes(content))
    (study.results / "runs" / "he_adam_seed1" / "metrics.json").unlink()
    result = study.snakemake("--cores", "1", check=False)
    assert result.returncode != 0
    log = (study.results / "runs" / "he_adam_seed1" / "train.log").read_text()
    assert f"{array.relative_to(study.root)} changed after it was written" in log
    assert f"Fix: delete {array.parent.relative_to(study.root)} and rerun the workflow" in log
