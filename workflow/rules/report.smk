report: "../report/workflow.rst"


# Analysis of the finished runs: cheap, so it runs on the submitting host, never on the cluster.
localrules:
    aggregate,
    figures,
    findings,


rule aggregate:
    input:
        metrics=run_metrics(),
        code=code_inputs("write_summary.py", "aggregate.py"),
    output:
        summary=report(SUMMARY_CSV, caption="../report/summary.rst", category="Tables"),
        combinations=report(COMBINATIONS_CSV, caption="../report/combinations.rst", category="Tables"),
    params:
        **REPORT_PARAMS,
    log:
        "results/logs/aggregate.log",
    conda:
        "../../envs/cluster.yaml"
    script:
        "../scripts/write_summary.py"


rule figures:
    input:
        metrics=run_metrics(),
        summary=SUMMARY_CSV,
        combinations=COMBINATIONS_CSV,
        code=code_inputs("draw_figures.py", "figures.py", "aggregate.py"),
    output:
        **{
            name: report(f"{FIGURES_DIR}/{name}.png", caption=f"../report/{name}.rst", category="Figures")
            for name in FIGURE_NAMES
        },
    params:
        **REPORT_PARAMS,
    log:
        "results/logs/figures.log",
    conda:
        "../../envs/cluster.yaml"
    script:
        "../scripts/draw_figures.py"


rule findings:
    input:
        metrics=run_metrics(),
        summary=SUMMARY_CSV,
        combinations=COMBINATIONS_CSV,
        code=code_inputs("write_findings.py", "findings.py", "aggregate.py"),
        **{name: f"{FIGURES_DIR}/{name}.png" for name in FIGURE_NAMES},
        diagnostic_sections=diagnostic_sections(),
        diagnostic_figures=diagnostic_figures(),
    output:
        findings=report(FINDINGS_MD, caption="../report/findings.rst", category="Findings"),
    params:
        **REPORT_PARAMS,
    log:
        "results/logs/findings.log",
    conda:
        "../../envs/cluster.yaml"
    script:
        "../scripts/write_findings.py"
