"""The MLflow export (fmnist_initopt.mlflow_export), read back through MLflow's own client: every run, its params,
its per-epoch metric histories, tags and artifacts; re-exporting keeps, replaces or deletes, never duplicates.
MLflow is an optional extra: without it this is skipped, except under CI=true (make test installs it)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
from fake_metrics import fake_metrics

from fmnist_initopt import mlflow_export

needs_mlflow = pytest.mark.skipif(
    importlib.util.find_spec("mlflow") is None and os.environ.get("CI") != "true",
    reason="MLflow is an optional extra (pip install -e .[mlflow]); CI=true runs this test",
)
STUDY = "small"


def small_study() -> list[dict]:
    """Four completed runs (two with three epochs) and one that diverged in its second epoch."""
    runs = [
        fake_metrics(init, "adam", seed, [0.7, 0.8, 0.8 + seed / 100]) for init in ("he", "xavier") for seed in (1, 2)
    ]
    return [*runs, fake_metrics("he", "sgd", 1, [0.5], diverged_at=(2, 10), epochs=3)]


def write_runs(root: Path, runs: list[dict]) -> list[Path]:
    paths = []
    for metrics in runs:
        path = root / "results" / STUDY / "runs" / metrics["run"]["id"] / "metrics.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(metrics))
        path.with_name("train.log").write_text(f"{metrics['run']['id']}: trained\n")
        paths.append(path)
    return paths


def read_back(record: dict) -> tuple[object, dict]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=record["tracking_uri"])
    experiment = client.get_experiment_by_name(f"fmnist-initopt/{STUDY}")
    runs = client.search_runs([experiment.experiment_id])
    keys = [run.data.tags[mlflow_export.RUN_KEY] for run in runs]
    assert len(keys) == len(set(keys)), keys  # one MLflow run per run of the study, never two
    return client, {key: run for key, run in zip(keys, runs)}


def check_run(client, exported, metrics: dict) -> None:
    spec, history = metrics["spec"], metrics["history"]
    params = exported.data.params
    assert params["init_function"] == spec["init_function"] and params["optimizer_class"] == spec["optimizer_class"]
    assert params["optimizer_kwargs.lr"] == json.dumps(spec["optimizer_kwargs"]["lr"]) and params["seed"] == str(
        spec["seed"]
    )
    assert (
        params["split.val_source"] == "holdout" and params["depth"] == "0" and params["epochs"] == str(spec["epochs"])
    )
    for name in ("val_accuracy", "train_loss", "epoch_seconds"):
        points = client.get_metric_history(exported.info.run_id, name)
        assert [(point.step, point.value) for point in points] == list(zip(history["epoch"], history[name])), name
    tags = exported.data.tags
    assert (
        tags["status"] == metrics["status"] and tags["precision"] == "fp32" and tags["environment.host"] == "testhost"
    )
    assert exported.info.status == ("FINISHED" if metrics["status"] == "completed" else "FAILED")
    artifacts = {item.path for item in client.list_artifacts(exported.info.run_id)}
    assert artifacts == {"metrics.json", "train.log"}
    if metrics["status"] == "completed":
        assert exported.data.metrics["test_accuracy"] == metrics["test"]["accuracy"]
    else:
        assert "test_accuracy" not in exported.data.metrics


@needs_mlflow
def test_every_run_reads_back_and_a_rerun_replaces_it(tmp_path):
    runs = small_study()
    paths = write_runs(tmp_path, runs)
    store = tmp_path / "results" / STUDY / "mlruns"
    record = mlflow_export.export_study(paths, STUDY, None, store)
    assert record["created"] == len(runs) and record["tracking_uri"].startswith("sqlite:///")
    client, exported = read_back(record)
    assert set(exported) == {f"runs/{metrics['run']['id']}" for metrics in runs}
    for metrics in runs:
        check_run(client, exported[f"runs/{metrics['run']['id']}"], metrics)

    # the same files again: nothing is written; one run retrained (new metrics.json): only it is replaced
    assert mlflow_export.export_study(paths, STUDY, None, store)["unchanged"] == len(runs)
    runs[0]["test"]["accuracy"] = 0.5
    paths[0].write_text(json.dumps(runs[0]))
    again = mlflow_export.export_study(paths, STUDY, None, store)
    assert (again["replaced"], again["unchanged"], again["created"]) == (1, len(runs) - 1, 0)
    client, exported = read_back(again)
    assert len(exported) == len(runs) and exported["runs/he_adam_seed1"].data.metrics["test_accuracy"] == 0.5
    assert exported["runs/he_adam_seed1"].info.run_id != record["runs"]["runs/he_adam_seed1"]

    # a run the study no longer has leaves the experiment
    fewer = mlflow_export.export_study(paths[1:], STUDY, None, store)
    assert fewer["deleted"] == 1 and "runs/he_adam_seed1" not in read_back(fewer)[1]


def test_without_mlflow_the_export_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    with pytest.raises(mlflow_export.MlflowMissing, match=r"^MLflow is not installed: pip install -e \.\[mlflow\]$"):
        mlflow_export.export_study([], STUDY, None, "unused")
