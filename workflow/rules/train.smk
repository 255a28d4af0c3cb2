rule train:
    input:
        # The study's data record: the data is in the spec (its checksums), so re-preparing the same bytes,
        # which re-creates this record, must not retrain; hence ancient. The arrays themselves are a cache
        # the job reads (and re-creates if deleted) outside the DAG.
        data=ancient(STUDY_DATA),
        code=TRAINING_CODE,
    output:
        metrics=f"{RUN_DIR}/metrics.json",
    log:
        train=f"{RUN_DIR}/train.log",
        # rewritten after every epoch; a log, so it never decides a rerun (progress.py)
        progress=f"{PROGRESS_DIR}/{RUN_NAME}.json",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=3000,
        runtime=60,
    params:
        spec=spec_of,
        checkpoint=checkpoint_of,
        data_root=DATA_ROOT,
    script:
        "../scripts/train.py"
