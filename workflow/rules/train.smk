rule train:
    input:
        # The data is pinned by checksum, so a re-fetch cannot change it: its timestamp must not retrain.
        data=ancient(RAW_FILES),
        code=TRAINING_CODE,
    output:
        metrics=RUN_METRICS,
    params:
        spec=spec_of,
    log:
        RUN_LOG,
    threads: 1
    resources:
        mem_mb=3000,
        runtime=60,
    conda:
        "../../envs/cluster.yaml"
    script:
        "../scripts/train.py"
