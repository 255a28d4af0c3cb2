"""Snakemake entry: one verified FashionMNIST raw file under data/."""

from fmnist_initopt.data import fetch_raw_files, root_of
from fmnist_initopt.logs import log_to

log = log_to(snakemake.log[0])
data = snakemake.config["data"]
try:
    fetch_raw_files(
        root_of(snakemake.output[0]),
        data["sources"],
        data["sha256"],
        data["timeout_seconds"],
        names=[snakemake.wildcards.raw_name],
    )
except Exception:
    log.exception("fetching FashionMNIST failed")
    raise
