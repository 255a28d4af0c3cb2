"""Snakemake entry: every run of the study into an MLflow tracking store (rule export_mlflow)."""

import sys
from pathlib import Path

from fmnist_initopt.atomic import atomic_write_json
from fmnist_initopt.logs import logged
from fmnist_initopt.mlflow_export import MlflowMissing, export_study

with logged(snakemake.log[0], "the MLflow export failed") as log:
    params, output = snakemake.params, snakemake.output
    try:  # the default store is the directory the record is written to (results/<study>/mlruns/)
        record = export_study(snakemake.input.metrics, params.study, params.tracking_uri, Path(output.record).parent)
    except MlflowMissing as error:  # the optional extra: one line with the fix
        log.error("%s", error)
        sys.exit(1)
    atomic_write_json(output.record, record)
    log.info(
        "%s, experiment %s: %d runs created, %d replaced, %d unchanged, %d deleted",
        record["tracking_uri"],
        record["experiment"],
        *(record[count] for count in ("created", "replaced", "unchanged", "deleted")),
    )
