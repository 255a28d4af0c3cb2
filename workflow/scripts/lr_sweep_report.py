"""Snakemake entry: the learning-rate sweep's figure and Markdown section."""

from fmnist_initopt.aggregate import load_metrics
from fmnist_initopt.atomic import atomic_write_text
from fmnist_initopt.diagnostic_figures import lr_sweep_figure
from fmnist_initopt.logs import logged
from fmnist_initopt.sweep_findings import sweep_section

with logged(snakemake.log[0], "learning-rate sweep report failed") as log:
    metrics_list = load_metrics(snakemake.input.metrics)
    default_lrs = snakemake.params.default_lrs
    lr_sweep_figure(metrics_list, default_lrs, snakemake.output.figure)
    validation_source = next((m["data"]["validation_source"] for m in metrics_list), "holdout")
    section = sweep_section(metrics_list, default_lrs, validation_source, snakemake.params.confidence)
    atomic_write_text(snakemake.output.section, section)
    log.info("learning-rate sweep report from %d runs", len(metrics_list))
