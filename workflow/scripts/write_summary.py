"""Snakemake entry: the runs' metrics.json files -> summary.csv (per run) and combinations.csv (per init x optimizer)."""

from fmnist_initopt.aggregate import combine, load_metrics, summarize_runs, write_csv
from fmnist_initopt.logs import logged

with logged(snakemake.log[0], "aggregation failed") as log:
    summary = summarize_runs(load_metrics(snakemake.input.metrics), snakemake.params.target_accuracy)
    combinations = combine(summary, snakemake.params.confidence)
    write_csv(summary, snakemake.output.summary)
    write_csv(combinations, snakemake.output.combinations)
    log.info(
        "%d runs (%d diverged) in %d combinations; target accuracy %g, confidence %g",
        len(summary),
        (summary["status"] == "diverged").sum(),
        len(combinations),
        snakemake.params.target_accuracy,
        snakemake.params.confidence,
    )
