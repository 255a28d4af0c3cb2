"""The spine end to end: snakemake on synthetic data in a temporary copy of the workflow."""

import json

import jsonschema
import pytest
from conftest import metrics_schema


def test_one_valid_metrics_file_per_combination_and_a_second_run_does_nothing(finished_copy):
    # the session's tiny study, run once by `snakemake --cores 2` (conftest.finished_study)
    study, result = finished_copy, finished_copy.finished_by
    schema = metrics_schema()
    runs = sorted(p.parent.name for p in (study.results / "runs").glob("*/metrics.json"))
    expected = sorted(f"{i}_{o}_seed1" for i in ("he", "xavier") for o in ("adam", "rmsprop", "sgd"))
    assert runs == expected
    for run in runs:
        metrics = study.metrics(run)
        jsonschema.validate(metrics, schema)
        assert metrics["status"] == "completed"
        assert len(metrics["history"]["epoch"]) == 2
        assert (study.results / "runs" / run / "train.log").read_text().count("epoch ") >= 2
    # the terminal: one line per epoch of each run, each with the study's progress (progress.py)
    epoch_lines = [line for line in result.stderr.splitlines() if "| study main: " in line]
    assert len(epoch_lines) == 12
    assert sum("epoch 2/2 " in line and "val_accuracy " in line for line in epoch_lines) == 6
    assert any(line.endswith("study main: 12/12 epochs, every epoch trained") for line in epoch_lines)
    assert any("epochs, about " in line and " of training left" in line for line in epoch_lines)
    plan = json.loads((study.results / "progress" / "plan.json").read_text())
    assert sorted(plan["runs"]) == expected and set(plan["runs"].values()) == {2}
    again = study.snakemake("--cores", "2", "-n")
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.parametrize(
    "overrides,key",
    [
        ({"grid": {"optimizers": ["sgd", "adagrad2"]}}, "grid.optimizers"),
        ({"optimizers": {"adam": {"class": "Adam", "kwargs": {"lr": -0.001}}}}, "optimizers.adam.kwargs.lr"),
        ({"training": {"epochs": 0}}, "training.epochs"),
        ({"trainig": {"epochs": 3}}, "trainig"),
    ],
)
def test_bad_config_fails_before_any_job_naming_the_key(study, overrides, key):
    study.write_config(overrides)
    result = study.snakemake("--cores", "1", check=False)
    assert result.returncode != 0
    assert key in result.stderr
    assert not (study.results / "runs").exists()
