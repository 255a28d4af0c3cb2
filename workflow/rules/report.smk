report: "../report/workflow.rst"


# Analysis of the finished runs: cheap, so it runs on the submitting host, never on the cluster.
localrules:
    aggregate,
    figures,
    findings,


rule aggregate:
    input:
        metrics=run_metrics(),
        code=package_code("aggregate", "stats"),
    output:
        summary=report(SUMMARY_CSV, caption="../report/summary.rst", category="Tables"),
        combinations=report(
            COMBINATIONS_CSV, caption="../report/combinations.rst", category="Tables"
        ),
    log:
        "results/logs/aggregate.log",
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
        code=package_code("figures", "aggregate", "stats"),
    output:
        **{name: report_figure(name, "Figures") for name in SUMMARY_FIGURES},
    log:
        "results/logs/figures.log",
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
        code=package_code("findings", "aggregate", "stats"),
        figures=[figure_path(name) for name in SUMMARY_FIGURES + diagnostic_figures()],
        sections=diagnostic_sections(),
    output:
        findings=report(
            FINDINGS_MD, caption="../report/findings.rst", category="Findings"
        ),
    log:
        "results/logs/findings.log",
    conda:
        CONDA_ENV
    params:
        **REPORT_PARAMS,
        figure_titles={
            figure_path(name): FIGURES[name]
            for name in SUMMARY_FIGURES + diagnostic_figures()
        },
        tables={
            "one row per run (summary.csv)": SUMMARY_CSV,
            "one row per combination (combinations.csv)": COMBINATIONS_CSV,
        },
    script:
        "../scripts/write_findings.py"
