"""Snakemake entry: results/findings.html, findings.md as a self-contained page for the HTML report."""

from fmnist_initopt.atomic import atomic_write_text
from fmnist_initopt.html_report import markdown_file_to_html
from fmnist_initopt.logs import log_to

log = log_to(snakemake.log[0])
try:
    atomic_write_text(snakemake.output.page, markdown_file_to_html(snakemake.input.findings))
    log.info("wrote %s", snakemake.output.page)
except Exception:
    log.exception("rendering the findings as HTML failed")
    raise
