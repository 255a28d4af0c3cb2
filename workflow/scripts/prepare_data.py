"""Snakemake entry: decode the verified raw files once into the arrays every training job loads."""

from pathlib import Path

from fmnist_initopt.data import prepare_data
from fmnist_initopt.logs import log_to

log = log_to(snakemake.log[0])
try:
    prepare_data(Path(snakemake.input.raw[0]).parent, Path(snakemake.output.manifest).parent)
except Exception:
    log.exception("decoding FashionMNIST failed")
    raise
