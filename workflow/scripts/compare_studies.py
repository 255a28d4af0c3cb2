"""Snakemake entry: compare.md, its figure and its HTML page, this study against the one compare_with names."""

import sys

from fmnist_initopt import compare
from fmnist_initopt.atomic import atomic_write_text
from fmnist_initopt.compare_report import write_comparison
from fmnist_initopt.html_report import markdown_file_to_html
from fmnist_initopt.logs import logged

with logged(snakemake.log[0], "comparing the studies failed") as log:
    inputs, params, output = snakemake.input, snakemake.params, snakemake.output
    try:  # the other study is the reference (A): the page shows this study - that one
        reference = compare.study_from_files(params.other, inputs.other)
        this = compare.study_from_files(params.this, inputs.this)
        result = compare.compare_studies(reference, this, params.confidence)
    except compare.CompareError as error:  # one line naming the problem and its fix, no traceback
        log.error("compare_with: %s", error)
        sys.exit(1)
    write_comparison(result, output.page, output.figure)
    atomic_write_text(output.html, markdown_file_to_html(output.page))
    log.info("wrote %s (%d pairs, %d settings differ)", output.page, len(result.paired), len(result.differing))
