# `snakemake export_mlflow`: every run of the study (grid runs at every depth, sweep points) into an MLflow
# tracking store, one experiment per study (config key mlflow.tracking_uri; default a SQLite store in
# results/<study>/mlruns/). Not part of `all`: it needs the optional extra (pip install -e .[mlflow]).
# Derived from the runs' metrics.json only; re-exporting after a rerun replaces that run's MLflow run.


localrules:
    export_mlflow,


rule export_mlflow:
    input:
        metrics=list(
            dict.fromkeys(
                run_metrics(study.depths(config))
                + (sweep_metrics() if sweep_on() else [])
            )
        ),
        # compare.py's flattening of the spec, and what compare.py imports
        code=package_code(
            "mlflow_export",
            "compare",
            "compare_report",
            "aggregate",
            "figures",
            "wording",
            *STATISTICS_CODE,
        ),
    output:
        record=MLFLOW_EXPORT,
    log:
        log_path("export_mlflow"),
    conda:
        CONDA_ENV
    params:
        study=config["study"],
        tracking_uri=config["mlflow"]["tracking_uri"],
    script:
        "../scripts/export_mlflow.py"
