localrules:
    fetch_data,


# Downloads run on the submitting host: cluster nodes often have no internet.
rule fetch_data:
    output:
        RAW_FILES,
    log:
        "results/logs/fetch_data.log",
    conda:
        "../../envs/cluster.yaml"
    script:
        "../scripts/fetch_data.py"
