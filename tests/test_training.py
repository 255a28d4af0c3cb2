import torch

from fmnist_data import Splits, normalise
from synthetic import synthetic_arrays
from training import RunSpec, train_run


def synthetic_splits(n_train=400, n_test=200) -> Splits:
    arrays = {k: torch.from_numpy(v.astype("int64") if "labels" in k else v) for k, v in synthetic_arrays(n_train, n_test).items()}
    images, labels = normalise(arrays["train-images-idx3-ubyte"]), arrays["train-labels-idx1-ubyte"]
    return Splits(
        train_x=images[100:], train_y=labels[100:], val_x=images[:100], val_y=labels[:100],
        test_x=normalise(arrays["t10k-images-idx3-ubyte"]), test_y=arrays["t10k-labels-idx1-ubyte"],
        val_source="holdout",
    )


def spec(seed=1, optimizer="adam", epochs=2, **changes):
    classes = {"adam": ("Adam", {"lr": 0.001}), "sgd": ("SGD", {"lr": 0.01, "momentum": 0.9})}
    fields = dict(
        init="he", init_function="kaiming_normal_", init_kwargs={"mode": "fan_in", "nonlinearity": "relu"},
        optimizer=optimizer, optimizer_class=classes[optimizer][0], optimizer_kwargs=classes[optimizer][1],
        seed=seed, epochs=epochs, batch_size=32, split={},
    )
    return RunSpec(**{**fields, **changes})


def without_timings(metrics):
    stripped = {k: v for k, v in metrics.items() if k != "training_seconds"}
    stripped["history"] = {k: v for k, v in metrics["history"].items() if k != "epoch_seconds"}
    return stripped


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
