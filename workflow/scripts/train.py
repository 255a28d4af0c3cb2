"""Snakemake entry: train one (init, optimizer, seed) run and write its metrics.json."""

from pathlib import Path

import torch

from fmnist_initopt.atomic import atomic_write_json
from fmnist_initopt.data import load_splits
from fmnist_initopt.environment import environment, resolve_device
from fmnist_initopt.logs import log_to
from fmnist_initopt.study import run_spec_from_json
from fmnist_initopt.training import train_run

log = log_to(snakemake.log[0])
try:
    torch.set_num_threads(snakemake.threads)
    spec = run_spec_from_json(snakemake.params.spec)
    device = resolve_device(snakemake.config["device"])
    split = spec.split
    splits = load_splits(
        Path(snakemake.input.manifest).parent,
        split["val_source"],
        split["val_size"],
        split["split_seed"],
        split["train_size"],
        pinned_sha256=snakemake.config["data"]["sha256"],
    )
    log.info("%s on %s: %s", spec.run_id, device, splits.sizes())
    # Left in place when the run is done: the Snakefile's hooks remove it (remove_finished_checkpoints).
    checkpoint = Path(snakemake.params.checkpoint)
    metrics = train_run(spec, splits, device, checkpoint)
    metrics["environment"] = environment(device, torch.get_num_threads(), snakemake.scriptdir)
    atomic_write_json(snakemake.output.metrics, metrics)
except Exception:
    log.exception("training failed")
    raise
