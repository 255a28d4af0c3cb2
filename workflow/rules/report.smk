report: "../report/workflow.rst"


# Analysis of the finished runs: cheap, so it runs on the submitting host, never on the cluster.
localrules:
    aggregate,
    figures,
    findings,
    findings_html,


rule aggregate:
    input:
        metrics=run_metrics(),
        code=package_code("aggregate", *STATISTICS_CODE),
    output:
        summary=report(
            SUMMARY_CSV,
            caption="../report/summary.rst",
            category=REPORT_CATEGORIES["tables"],
        ),
        combinations=report(
            COMBINATIONS_CSV,
            caption="../report/combinations.rst",
            category=REPORT_CATEGORIES["tables"],
        ),
    log:
        log_path("aggregate"),
    conda:
        CONDA_ENV
    params:
        **REPORT_PARAMS,
    script:
        "../scripts/write_summary.py"


rule figures:
    input:
        metrics=run_metrics(),
        summary=SUMMARY_CSV,
        combinations=COMBINATIONS_CSV,
        code=package_code("figures", "aggregate", *STATISTICS_CODE),
    output:
        **{name: report_figure(name, "figures") for name in SUMMARY_FIGURES},
    log:
        log_path("figures"),
    conda:
        CONDA_ENV
    params:
        **REPORT_PARAMS,
    script:
        "../scripts/draw_figures.py"


rule findings:
    input:
        metrics=run_metrics(),
        summary=SUMMARY_CSV,
        code=package_code(
            "findings",
            "findings_answer",
            "findings_best",
            "findings_comparisons",
            "findings_conditions",
            "findings_cost",
            "findings_generalization",
            "findings_methods",
            "findings_problems",
            "findings_sensitivity",
            "findings_speed",
            "wording",
            "aggregate",
            *STATISTICS_CODE,
        ),
        step_costs=STEP_COST_CSV,
        figures=[figure_path(name) for name in findings_figures()],
        sections=diagnostic_sections(),
    output:
        # In the HTML report as findings.html (the report shows Markdown only as a download).
        findings=FINDINGS_MD,
    log:
        log_path("findings"),
    conda:
        CONDA_ENV
    params:
        **REPORT_PARAMS,
        figure_titles={figure_path(name): FIGURES[name] for name in findings_figures()},
        tables={
            "one row per run (summary.csv)": SUMMARY_CSV,
            "one row per combination (combinations.csv)": COMBINATIONS_CSV,
        },
    script:
        "../scripts/write_findings.py"


# The report's first item: findings.md (which includes the diagnostics and sweep sections) as one
# page with every figure and table it links embedded, so it reads in the report and on its own.
rule findings_html:
    input:
        findings=FINDINGS_MD,
        figures=[figure_path(name) for name in findings_figures()],
        tables=[SUMMARY_CSV, COMBINATIONS_CSV],
        code=package_code("html_report"),
    output:
        page=report(
            FINDINGS_HTML,
            caption="../report/findings.rst",
            category=REPORT_CATEGORIES["findings"],
        ),
    log:
        log_path("findings_html"),
    conda:
        CONDA_ENV
    script:
        "../scripts/write_findings_html.py"
