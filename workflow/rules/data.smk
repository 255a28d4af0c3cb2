localrules:
    fetch_data,


# Downloads run on the submitting host: cluster nodes often have no internet. One job per file:
# Snakemake deletes a job's outputs before it runs, so a missing file must not cost the verified others.
rule fetch_data:
    output:
        RAW_FILE,
    log:
        "results/logs/fetch_data/{raw_name}.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/fetch_data.py"
