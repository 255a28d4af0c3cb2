# The depth study's report: <study>/depth.md and its figure, from the runs of every depth in the grid.
# Planned only when model.extra_conv_layers lists two or more depths (see report_outputs()).


localrules:
    depth_report,


rule depth_report:
    input:
        metrics=run_metrics(study.depths(config)),
        code=package_code(
            "depth_analysis",
            "depth_findings",
            "findings_comparisons",
            "wording",
            "aggregate",
            *STATISTICS_CODE,
        ),
    output:
        figure=report_figure("depth", "depth"),
        section=DEPTH_SECTION,
    log:
        log_path("depth_report"),
    conda:
        CONDA_ENV
    params:
        confidence=config["report"]["confidence"],
    script:
        "../scripts/depth_report.py"
