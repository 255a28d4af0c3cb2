localrules:
    signal_report,
    lr_sweep_report,


rule signal_report:
    input:
        metrics=run_metrics(),
        code=package_code(
            "signal_analysis",
            "signal_findings",
            "sweep_analysis",
            "diagnostic_figures",
            "findings_comparisons",
            "wording",
            "aggregate",
            *STATISTICS_CODE,
        ),
    output:
        at_init=report_figure("signal_at_init", "diagnostics"),
        over_epochs=report_figure("signal_grad_norms", "diagnostics"),
        section=SIGNAL_SECTION,
    log:
        log_path("signal_report"),
    conda:
        CONDA_ENV
    params:
        confidence=config["report"]["confidence"],
    script:
        "../scripts/signal_report.py"


# A sweep point trains exactly like a grid run, with its own learning rate and paths.
use rule train as train_sweep with:
    output:
        metrics=f"{SWEEP_DIR}/metrics.json",
    log:
        train=f"{SWEEP_DIR}/train.log",
        progress=f"{PROGRESS_DIR}/{SWEEP_NAME}.json",
    conda:
        CONDA_ENV
    params:
        spec=sweep_spec_of,
        checkpoint=checkpoint_of,
        data_root=DATA_ROOT,


rule lr_sweep_report:
    input:
        metrics=sweep_metrics(),
        code=package_code(
            "sweep_analysis",
            "sweep_findings",
            "signal_analysis",
            "diagnostic_figures",
            "findings_comparisons",
            "wording",
            "aggregate",
            *STATISTICS_CODE,
        ),
    output:
        figure=report_figure("lr_sweep", "sweep"),
        section=LR_SWEEP_SECTION,
    log:
        log_path("lr_sweep_report"),
    conda:
        CONDA_ENV
    params:
        default_lrs=study.default_lrs(config),
        confidence=config["report"]["confidence"],
    script:
        "../scripts/lr_sweep_report.py"
