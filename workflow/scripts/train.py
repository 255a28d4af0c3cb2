"""Snakemake entry: train one (init, optimizer, seed) run and write its metrics.json."""

from pathlib import Path

import torch

from atomic import atomic_write_json
from fmnist_data import load_splits, root_of
from logsetup import log_to
from runtime_env import environment, resolve_device
from study import run_spec_from_json
from training import train_run

log = log_to(snakemake.log[0])
try:
    torch.set_num_threads(snakemake.threads)
    spec = run_spec_from_json(snakemake.params.spec)
    device = resolve_device(snakemake.config["device"])
    split = spec.split
    splits = load_splits(
        root_of(snakemake.input.data[0]), split["val_source"], split["val_size"], split["split_seed"], split["train_size"]
    )
    log.info("%s on %s: %s", spec.run_id, device, splits.sizes())
    # Named after the run's directory, which is unique also for sweep runs that share a run_id.
    checkpoint = Path("results/checkpoints") / f"{Path(snakemake.output.metrics).parent.name}.pt"
    metrics = train_run(spec, splits, device, checkpoint)
    metrics["environment"] = environment(device, torch.get_num_threads(), snakemake.scriptdir)
    atomic_write_json(snakemake.output.metrics, metrics)
    checkpoint.unlink(missing_ok=True)
except Exception:
    log.exception("training failed")
    raise
