"""Snakemake entry: draw every report figure from the metrics and the aggregated tables."""

from fmnist_initopt import figures
from fmnist_initopt.aggregate import load_metrics, read_csv
from fmnist_initopt.logs import logged

with logged(snakemake.log[0], "drawing the figures failed") as log:
    all_metrics = load_metrics(snakemake.input.metrics)
    summary, combinations = read_csv(snakemake.input.summary), read_csv(snakemake.input.combinations)
    target, confidence, output = snakemake.params.target_accuracy, snakemake.params.confidence, snakemake.output
    figures.learning_curves(all_metrics, combinations, target, confidence, output.learning_curves)
    figures.accuracy_and_time(summary, combinations, confidence, output.accuracy_and_time)
    figures.epochs_to_target(summary, combinations, target, confidence, output.epochs_to_target)
    figures.init_weights(all_metrics, output.init_weights)
    log.info("figures written: %s", ", ".join(output))
