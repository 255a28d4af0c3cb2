"""Snakemake entry: train one (init, optimizer, seed) run and write its metrics.json."""

from pathlib import Path

import torch

from fmnist_initopt.atomic import atomic_write_json
from fmnist_initopt.data import ensure_prepared, load_splits
from fmnist_initopt.environment import environment, resolve_device
from fmnist_initopt.logs import logged
from fmnist_initopt.progress import RunProgress
from fmnist_initopt.study import run_spec_from_json
from fmnist_initopt.training import train_run

with logged(snakemake.log.train, "training failed") as log:
    torch.set_num_threads(snakemake.threads)
    spec = run_spec_from_json(snakemake.params.spec)
    device = resolve_device(snakemake.config["device"])
    split = spec.split
    # the arrays decoded from exactly the data the spec names (fetched and decoded here if it was deleted)
    data = snakemake.config["data"]
    prepared = ensure_prepared(snakemake.params.data_root, spec.data, data["sources"], data["timeout_seconds"])
    splits = load_splits(
        prepared, split["val_source"], split["val_size"], split["split_seed"], split["train_size"], spec.data
    )
    log.info("%s on %s: %s", spec.run_id, device, splits.sizes())
    # Left in place when the run is done: the Snakefile's hooks remove it (remove_finished_checkpoints).
    checkpoint = Path(snakemake.params.checkpoint)
    progress = RunProgress(spec.run_id, spec.epochs, Path(snakemake.log.progress))
    metrics = train_run(spec, splits, device, checkpoint, progress)
    metrics["environment"] = environment(device, torch.get_num_threads(), snakemake.scriptdir)
    atomic_write_json(snakemake.output.metrics, metrics)
