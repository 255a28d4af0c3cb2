"""Snakemake entry: the depth study's figure and Markdown section."""

from fmnist_initopt.aggregate import load_metrics
from fmnist_initopt.atomic import atomic_write_text
from fmnist_initopt.depth_analysis import depth_figure
from fmnist_initopt.depth_findings import depth_section
from fmnist_initopt.logs import logged

with logged(snakemake.log[0], "depth report failed") as log:
    metrics_list = load_metrics(snakemake.input.metrics)
    depth_figure(metrics_list, snakemake.output.figure)
    atomic_write_text(snakemake.output.section, depth_section(metrics_list, snakemake.params.confidence))
    log.info("depth report from %d runs", len(metrics_list))
