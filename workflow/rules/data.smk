localrules:
    fetch_data,
    prepare_data,


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


# Decodes the IDX files once (about a second), so no training job parses them again: every job
# memory-maps these arrays and checks them against the manifest's checksums.
rule prepare_data:
    input:
        # pinned by checksum: a re-fetch cannot change them, so their timestamps must not redo this
        raw=ancient(RAW_FILES),
        code=package_code("data"),
    output:
        arrays=PREPARED_ARRAYS,
        manifest=PREPARED_MANIFEST_FILE,
    log:
        "results/logs/prepare_data.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/prepare_data.py"
