"""A loss that becomes NaN or infinite is a result: the run stops, says where, and the study goes on."""

import math

import jsonschema
import torch
from conftest import metrics_schema, spec, synthetic_splits

from fmnist_initopt import training

# Plain SGD at this rate blows the synthetic-data CNN up within the first few steps, for every seed tried.
EXPLODING_SGD = {"optimizer_class": "SGD", "optimizer_kwargs": {"lr": 1.0e3}}


def test_exploding_learning_rate_stops_the_run_at_once_and_records_where():
    metrics = training.train_run(
        spec(optimizer="sgd", epochs=5, **EXPLODING_SGD), synthetic_splits(), torch.device("cpu")
    )
    assert metrics["status"] == "diverged"
    divergence = metrics["divergence"]
    assert divergence["epoch"] == 1
    assert 1 <= divergence["step"] <= training.DIVERGENCE_CHECK_EVERY
    assert divergence["loss"] in ("nan", "inf", "-inf")
    assert metrics["history"]["epoch"] == []  # stopped inside epoch 1: none of the 5 epochs completed
    assert metrics["test"] == {"loss": None, "accuracy": None}


def test_divergence_in_a_later_epoch_keeps_the_history_so_far(monkeypatch):
    real_train_epoch = training.train_epoch
    calls = []

    def poisoned_in_epoch_two(model, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            with torch.no_grad():
                next(model.parameters()).fill_(math.inf)
        return real_train_epoch(model, *args, **kwargs)

    monkeypatch.setattr(training, "train_epoch", poisoned_in_epoch_two)
    metrics = training.train_run(spec(epochs=4), synthetic_splits(), torch.device("cpu"))
    assert metrics["status"] == "diverged"
    assert (metrics["divergence"]["epoch"], metrics["divergence"]["step"]) == (2, 1)
    assert metrics["history"]["epoch"] == [1]
    assert all(math.isfinite(v) for v in metrics["history"]["train_loss"] + metrics["history"]["val_loss"])
    assert len(calls) == 2  # epochs 3 and 4 never ran


def test_a_diverging_run_succeeds_as_a_job_and_the_study_goes_on(study):
    study.write_config(
        {
            "grid": {"inits": ["he"], "optimizers": ["sgd", "adam"]},
            "optimizers": {"sgd": {"class": "SGD", "kwargs": {"lr": 1.0e3}}},
        }
    )
    # the runs only: test_real_data's diverging study checks the report a diverged run leaves
    runs = [f"results/main/runs/he_{optimizer}_seed1/metrics.json" for optimizer in ("sgd", "adam")]
    study.snakemake("--cores", "2", *runs)
    diverged, completed = study.metrics("he_sgd_seed1"), study.metrics("he_adam_seed1")
    for metrics in (diverged, completed):
        jsonschema.validate(metrics, metrics_schema())
    assert diverged["status"] == "diverged" and diverged["divergence"]["epoch"] == 1
    assert diverged["hyperparameters"]["lr"] == 1.0e3
    assert completed["status"] == "completed" and len(completed["history"]["epoch"]) == 2
    log = (study.results / "runs" / "he_sgd_seed1" / "train.log").read_text()
    assert "loss became nan" in log or "loss became inf" in log
    assert not (study.results / "checkpoints" / "he_sgd_seed1.pt").exists()
    again = study.snakemake("--cores", "2", "-n", *runs)
    assert "Nothing to be done" in again.stdout + again.stderr  # a diverged run is a result, not retried
