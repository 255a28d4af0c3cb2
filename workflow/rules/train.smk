rule train:
    input:
        data=RAW_FILES,
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
