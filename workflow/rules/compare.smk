# This study against another one, run by run (config key compare_with): results/compare/<other>-vs-<study>/
# compare.md, its figure and its HTML page, the report's comparison item. Planned only when compare_with names
# a study (see report_outputs()); that study's runs are read as they are on disk (trained with its own config),
# this study's are the ones its config defines.

if config["compare_with"]:
    if config["compare_with"] == config["study"]:
        raise WorkflowError(
            f"Invalid config: compare_with is '{config['compare_with']}', this study itself; "
            "name another study (results/<name>/) or set compare_with: null"
        )
    if "compare" in (config["study"], config["compare_with"]):
        raise WorkflowError(
            "Invalid config: a study named 'compare' would share results/compare/ with the comparisons; "
            "give that study another name"
        )
    # The other study's runs as they are on disk when the workflow starts (a rerun of one redoes the comparison).
    OTHER_RUNS = sorted(
        Path("results", config["compare_with"]).glob("runs/*/metrics.json")
    )
    if not OTHER_RUNS:
        raise WorkflowError(
            f"Invalid config: compare_with is '{config['compare_with']}', but results/{config['compare_with']}/ "
            "has no runs/*/metrics.json; train that study first (snakemake --configfile <its config>) "
            "or set compare_with: null"
        )

    localrules:
        compare,

    rule compare:
        input:
            this=run_metrics(study.depths(config)),
            other=OTHER_RUNS,
            code=package_code(
                "compare",
                "compare_report",
                "figures",
                "html_report",
                "wording",
                "aggregate",
                *STATISTICS_CODE,
            ),
        output:
            page=COMPARE_MD,
            figure=report(
                COMPARE_FIGURE,
                caption="../report/compare_figure.rst",
                category=REPORT_CATEGORIES["compare"],
            ),
            html=report(
                COMPARE_HTML,
                caption="../report/compare.rst",
                category=REPORT_CATEGORIES["compare"],
            ),
        log:
            log_path("compare"),
        conda:
            CONDA_ENV
        params:
            confidence=config["report"]["confidence"],
            this=config["study"],
            other=config["compare_with"],
        script:
            "../scripts/compare_studies.py"
