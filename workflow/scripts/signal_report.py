"""Snakemake entry: signal-propagation figures and the Markdown section from every run's diagnostics."""

from fmnist_initopt.aggregate import load_metrics
from fmnist_initopt.atomic import atomic_write_text
from fmnist_initopt.diagnostic_figures import grad_norm_over_epochs_figure, signal_at_init_figure
from fmnist_initopt.logs import logged
from fmnist_initopt.signal_findings import signal_section

with logged(snakemake.log[0], "signal report failed") as log:
    metrics_list = load_metrics(snakemake.input.metrics)
    signal_at_init_figure(metrics_list, snakemake.output.at_init)
    grad_norm_over_epochs_figure(metrics_list, snakemake.output.over_epochs)
    atomic_write_text(snakemake.output.section, signal_section(metrics_list, snakemake.params.confidence))
    log.info("signal report from %d runs", len(metrics_list))
