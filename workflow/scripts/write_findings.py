"""Snakemake entry: write results/findings.md from the aggregated tables, the metrics and the figures."""

from pathlib import Path

from aggregate import load_metrics, read_csv
from atomic import atomic_write_text
from findings import DIAGNOSTIC_FIGURE_CAPTIONS, FIGURE_CAPTIONS, TABLE_CAPTIONS, findings_markdown
from logsetup import log_to

log = log_to(snakemake.log[0])
try:
    inputs = snakemake.input
    figures = {caption: inputs[name] for name, caption in FIGURE_CAPTIONS.items()}
    figures.update({DIAGNOSTIC_FIGURE_CAPTIONS[Path(path).stem]: path for path in inputs.diagnostic_figures})
    text = findings_markdown(
        read_csv(inputs.summary),
        read_csv(inputs.combinations),
        load_metrics(inputs.metrics),
        snakemake.params.target_accuracy,
        snakemake.params.confidence,
        figures=figures,
        tables={caption: inputs[name] for name, caption in TABLE_CAPTIONS.items()},
        output=snakemake.output.findings,
        extra_sections=tuple(Path(path).read_text() for path in inputs.diagnostic_sections),
    )
    atomic_write_text(snakemake.output.findings, text)
    log.info("wrote %s", snakemake.output.findings)
except Exception:
    log.exception("writing the findings failed")
    raise
