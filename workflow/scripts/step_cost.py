"""Snakemake entry: time one optimizer step of every grid (init, optimizer), interleaved, into a CSV."""

import json

import torch

from fmnist_initopt.atomic import atomic_write_text
from fmnist_initopt.cost import csv_text, measure_step_costs
from fmnist_initopt.logs import logged

with logged(snakemake.log[0], "measuring the step costs failed") as log:
    torch.set_num_threads(snakemake.threads)
    rows = measure_step_costs(json.loads(snakemake.params.plan))
    for row in rows:
        log.info("%s + %s: %.2f ms per step", row["init"], row["optimizer"], 1000 * row["median_step_seconds"])
    atomic_write_text(snakemake.output.csv, csv_text(rows))
