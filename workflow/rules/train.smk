rule train:
    input:
        # The data is pinned by checksum, so re-preparing it cannot change it: its timestamp must not retrain.
        data=ancient(PREPARED_ARRAYS),
        manifest=ancient(PREPARED_MANIFEST_FILE),
        code=TRAINING_CODE,
    output:
        metrics=f"{RUN_DIR}/metrics.json",
    log:
        f"{RUN_DIR}/train.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=3000,
        runtime=60,
    params:
        spec=spec_of,
        checkpoint=checkpoint_of,
    script:
        "../scripts/train.py"
