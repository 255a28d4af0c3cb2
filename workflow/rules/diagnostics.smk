localrules:
    signal_report,
    lr_sweep_report,


rule signal_report:
    input:
        metrics=run_metrics(),
    output:
        **SIGNAL_FIGURES,
        section=SIGNAL_SECTION,
    params:
        confidence=config["report"]["confidence"],
    log:
        "results/logs/signal_report.log",
    conda:
        "../../envs/cluster.yaml"
    script:
        "../scripts/signal_report.py"


# A sweep point trains exactly like a grid run, with its own learning rate and paths.
use rule train as train_sweep with:
    output:
        metrics=SWEEP_METRICS,
    params:
        spec=sweep_spec_of,
    log:
        SWEEP_LOG,


rule lr_sweep_report:
    input:
        metrics=sweep_metrics(),
    output:
        **LR_SWEEP_OUTPUTS,
    params:
        default_lrs=lr_sweep.default_lrs(config),
    log:
        "results/logs/lr_sweep_report.log",
    conda:
        "../../envs/cluster.yaml"
    script:
        "../scripts/lr_sweep_report.py"
