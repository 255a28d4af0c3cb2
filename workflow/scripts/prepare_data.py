"""Snakemake entry: the study's data, fetched where missing or unpinned and decoded into the shared cache,
and its record (the pinned checksums and where the arrays are)."""

from fmnist_initopt.atomic import atomic_write_json
from fmnist_initopt.data import ensure_prepared
from fmnist_initopt.logs import logged

with logged(snakemake.log[0], "preparing FashionMNIST failed") as log:
    data = snakemake.config["data"]
    sha256 = snakemake.params.sha256
    prepared = ensure_prepared(snakemake.params.data_root, sha256, data["sources"], data["timeout_seconds"])
    atomic_write_json(snakemake.output.record, {"sha256": sha256, "prepared": str(prepared)})
    log.info("the study trains on the data in %s (decoded in %s)", snakemake.params.data_root, prepared)
