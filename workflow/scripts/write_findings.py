"""Snakemake entry: write the study's findings.md from the per-run table, the metrics and the figures."""

from pathlib import Path

from fmnist_initopt.aggregate import load_metrics, read_csv
from fmnist_initopt.atomic import atomic_write_text
from fmnist_initopt.findings import findings_markdown
from fmnist_initopt.logs import logged

with logged(snakemake.log[0], "writing the findings failed") as log:
    inputs, params = snakemake.input, snakemake.params
    # The isolated per-step cost table, when the workflow measures it; without it the report ranks no cost.
    step_costs = inputs.get("step_costs")
    text = findings_markdown(
        read_csv(inputs.summary),
        load_metrics(inputs.metrics),
        params.target_accuracy,
        params.confidence,
        figures={title: path for path, title in params.figure_titles.items()},
        tables=params.tables,
        output=snakemake.output.findings,
        extra_sections=tuple(Path(path).read_text() for path in inputs.sections),
        step_costs=read_csv(step_costs) if step_costs else None,
    )
    atomic_write_text(snakemake.output.findings, text)
    log.info("wrote %s", snakemake.output.findings)
