"""Snakemake entry: findings.html, findings.md as a self-contained page for the HTML report."""

from fmnist_initopt.atomic import atomic_write_text
from fmnist_initopt.html_report import markdown_file_to_html
from fmnist_initopt.logs import logged

with logged(snakemake.log[0], "rendering the findings as HTML failed") as log:
    atomic_write_text(snakemake.output.page, markdown_file_to_html(snakemake.input.findings))
    log.info("wrote %s", snakemake.output.page)
