"""Snakemake entry: the depth study's figure and Markdown section."""

from fmnist_initopt.aggregate import load_metrics
from fmnist_initopt.atomic import atomic_write_text
from fmnist_initopt.depth_analysis import depth_figure, depth_section
from fmnist_initopt.logs import log_to

log = log_to(snakemake.log[0])
try:
    metrics_list = load_metrics(snakemake.input.metrics)
    depth_figure(metrics_list, snakemake.output.figure)
    atomic_write_text(snakemake.output.section, depth_section(metrics_list, snakemake.params.confidence))
    log.info("depth report from %d runs", len(metrics_list))
except Exception:
    log.exception("depth report failed")
    raise
