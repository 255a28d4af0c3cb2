"""The study's runs in an MLflow tracking store, to browse them with a tool people already use.

One MLflow experiment per study ("fmnist-initopt/<study>"), one MLflow run per run of the study (grid runs at
every depth, sweep points), derived from its metrics.json only: the spec as params (dotted keys, e.g.
optimizer_kwargs.lr, plus depth), the per-epoch curves as metrics with step = epoch, the test result, the
evaluation over the training images and the run's cost as metrics at its last epoch, status, precision and
environment as tags, and metrics.json and train.log as artifacts. A diverged run is an MLflow run that FAILED.

Each MLflow run carries the run's key (its directory under results/<study>/, e.g. runs/he_adam_seed1) and the
SHA-256 of its spec and of its metrics.json as tags. An export keeps the MLflow run of a key whose metrics.json
is unchanged and otherwise deletes it and writes the run anew, so re-exporting after a rerun replaces, never
duplicates; MLflow runs whose key is no longer a run of the study are deleted too: the experiment mirrors the
study. (MLflow deletes softly: `mlflow gc` purges deleted runs from the store.)

MLflow is an optional extra (pip install -e .[mlflow]) imported here only, when exporting. The default store is
SQLite (results/<study>/mlruns/mlflow.db, artifacts in results/<study>/mlruns/artifacts/): MLflow 3 refuses to
open a file store unless told to, and SQLite needs only SQLAlchemy and Alembic beside mlflow-skinny.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from fmnist_initopt.compare import flattened

INSTALL_HINT = "MLflow is not installed: pip install -e .[mlflow]"
EXPERIMENT_PREFIX = "fmnist-initopt/"
TAG = "fmnist_initopt."  # prefix of the tags that identify an MLflow run as one of the study's runs
RUN_KEY, SPEC_SHA256, METRICS_SHA256 = f"{TAG}run_key", f"{TAG}spec_sha256", f"{TAG}metrics_sha256"
CURVES = ("train_loss", "val_loss", "val_accuracy", "epoch_seconds")
BATCH = {"params": 100, "metrics": 1000}  # MLflow's log_batch limits per call


class MlflowMissing(RuntimeError):
    """The optional extra is not installed."""


def client_class():
    """MLflow's client class, imported on first use: MLflow is an optional extra."""
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise MlflowMissing(INSTALL_HINT) from None
    return MlflowClient


def default_tracking_uri(store_dir: str | Path) -> str:
    return f"sqlite:///{Path(store_dir).resolve() / 'mlflow.db'}"


def run_key(metrics_path: Path) -> str:
    """The run's directory under its study: runs/<run> or sweep/<point>."""
    return f"{metrics_path.parent.parent.name}/{metrics_path.parent.name}"


def spec_sha256(spec: dict[str, Any]) -> str:
    """The run's fingerprint, as study.RunSpec.fingerprint computes it from the same dict."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def params_of(metrics: dict[str, Any]) -> dict[str, str]:
    return {**flattened("", metrics["spec"]), "depth": str(metrics["run"].get("depth", 0))}


def tags_of(metrics: dict[str, Any], key: str, study: str, metrics_sha256: str) -> dict[str, str]:
    environment = {f"environment.{name}": value for name, value in (metrics.get("environment") or {}).items()}
    identity = {f"identity.{name}": value for name, value in (metrics.get("identity") or {}).items()}
    tags = {
        "mlflow.runName": key,
        RUN_KEY: key,
        f"{TAG}run_id": metrics["run"]["id"],
        f"{TAG}study": study,
        SPEC_SHA256: spec_sha256(metrics["spec"]),
        METRICS_SHA256: metrics_sha256,
        "status": metrics["status"],
        "precision": metrics["precision"],
        "validation_source": metrics["data"]["validation_source"],
        **environment,
        **identity,
    }
    return {name: value if isinstance(value, str) else json.dumps(value) for name, value in tags.items()}


def metric_points(metrics: dict[str, Any]) -> list[tuple[str, float, int]]:
    """(name, value, step): each curve per epoch (step = epoch), the final values at the last epoch."""
    history = metrics["history"]
    points = [(name, value, epoch) for name in CURVES for epoch, value in zip(history["epoch"], history[name])]
    last = history["epoch"][-1] if history["epoch"] else 0
    evaluation = metrics.get("train_evaluation") or {}
    cost = metrics.get("cost") or {}
    final = {
        "test_accuracy": metrics["test"]["accuracy"],
        "test_loss": metrics["test"]["loss"],
        "train_eval_accuracy": evaluation.get("accuracy"),
        "train_eval_loss": evaluation.get("loss"),
        "training_seconds": metrics.get("training_seconds"),
        "process_cpu_seconds": cost.get("process_cpu_seconds"),
        "median_step_seconds": cost.get("median_step_seconds"),
    }
    points += [(name, value, last) for name, value in final.items()]
    return [(name, float(value), step) for name, value, step in points if _finite(value)]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _chunks(items: list, size: int):
    return (items[start : start + size] for start in range(0, len(items), size))


def write_run(client, experiment_id: str, path: Path, study: str, digest: str) -> str:
    """One MLflow run from one metrics.json; returns its MLflow run id."""
    from mlflow.entities import Metric, Param

    metrics = json.loads(path.read_text())
    finished_ms = int(path.stat().st_mtime * 1000)
    started_ms = finished_ms - int(1000 * (metrics.get("training_seconds") or 0))
    tags = tags_of(metrics, run_key(path), study, digest)
    run_id = client.create_run(
        experiment_id, start_time=started_ms, tags=tags, run_name=tags["mlflow.runName"]
    ).info.run_id
    params = [Param(name, value) for name, value in params_of(metrics).items()]
    points = [Metric(name, value, finished_ms, step) for name, value, step in metric_points(metrics)]
    for chunk in _chunks(params, BATCH["params"]):
        client.log_batch(run_id, params=chunk)
    for chunk in _chunks(points, BATCH["metrics"]):
        client.log_batch(run_id, metrics=chunk)
    for artifact in (path, path.with_name("train.log")):
        if artifact.is_file():
            client.log_artifact(run_id, str(artifact))
    status = "FINISHED" if metrics["status"] == "completed" else "FAILED"
    client.set_terminated(run_id, status=status, end_time=finished_ms)
    return run_id


def experiment_of(client, study: str, artifact_location: str | None) -> str:
    """The study's experiment id, created (or restored from deletion) when needed."""
    name = f"{EXPERIMENT_PREFIX}{study}"
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(name, artifact_location=artifact_location, tags={f"{TAG}study": study})
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    return experiment.experiment_id


def exported_runs(client, experiment_id: str) -> dict[str, list]:
    """The experiment's active MLflow runs by run key (several only if an export was interrupted)."""
    by_key, token = {}, None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        for run in page:
            by_key.setdefault(run.data.tags.get(RUN_KEY), []).append(run)
        token = page.token
        if not token:
            return by_key


def export_study(metrics_paths, study: str, tracking_uri: str | None, store_dir: str | Path) -> dict[str, Any]:
    """Every run in `metrics_paths` into the study's experiment (see the module docstring); returns the record
    of what was written: tracking URI, experiment, MLflow run id per run key, and counts."""
    client_type = client_class()
    uri = tracking_uri or default_tracking_uri(store_dir)
    # Artifacts beside the default store; a configured tracking server keeps them where it is set up to.
    artifacts = None if tracking_uri else (Path(store_dir).resolve() / "artifacts").as_uri()
    client = client_type(tracking_uri=uri)
    experiment_id = experiment_of(client, study, artifacts)
    existing = exported_runs(client, experiment_id)
    written, counts = {}, dict.fromkeys(("created", "replaced", "unchanged", "deleted"), 0)
    for path in map(Path, metrics_paths):
        key, digest = run_key(path), hashlib.sha256(path.read_bytes()).hexdigest()
        previous = existing.pop(key, [])
        if len(previous) == 1 and previous[0].data.tags.get(METRICS_SHA256) == digest:
            written[key] = previous[0].info.run_id
            counts["unchanged"] += 1
            continue
        for run in previous:
            client.delete_run(run.info.run_id)
        written[key] = write_run(client, experiment_id, path, study, digest)
        counts["replaced" if previous else "created"] += 1
    for stale in existing.values():  # MLflow runs of runs the study no longer has
        for run in stale:
            client.delete_run(run.info.run_id)
            counts["deleted"] += 1
    experiment = f"{EXPERIMENT_PREFIX}{study}"
    return {"tracking_uri": uri, "experiment": experiment, "experiment_id": experiment_id, **counts, "runs": written}
