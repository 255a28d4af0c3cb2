import torch
from conftest import spec, synthetic_splits, without_timings

from fmnist_initopt.training import train_run


def test_training_lowers_the_loss():
    metrics = train_run(spec(epochs=3), synthetic_splits(), torch.device("cpu"))
    losses = metrics["history"]["train_loss"]
    assert metrics["status"] == "completed"
    assert losses[-1] < losses[0]
    assert metrics["history"]["val_accuracy"][-1] > 0.3  # chance is 0.1


def test_same_seed_gives_identical_metrics_and_another_seed_does_not():
    splits = synthetic_splits()
    first = train_run(spec(seed=5), splits, torch.device("cpu"))
    again = train_run(spec(seed=5), splits, torch.device("cpu"))
    other = train_run(spec(seed=6), splits, torch.device("cpu"))
    assert without_timings(first) == without_timings(again)
    assert first["history"]["train_loss"] != other["history"]["train_loss"]
    assert first["init_weight_stats"] != other["init_weight_stats"]


def test_metrics_record_the_hyperparameters_in_use():
    metrics = train_run(spec(optimizer="sgd", epochs=1), synthetic_splits(), torch.device("cpu"))
    assert metrics["hyperparameters"]["lr"] == 0.01
    assert metrics["hyperparameters"]["momentum"] == 0.9
    assert metrics["data"] == {"validation_source": "holdout", "train": 300, "validation": 100, "test": 200}
