localrules:
    prepare_data,


# The study's data: the raw files fetched where missing or not the pinned ones (downloads run on the
# submitting host: cluster nodes often have no internet), decoded once (about a second) into the shared
# cache data/prepared/<key>/ so that no training job parses them again, and recorded in the study.
# The record's name holds the key of the pinned checksums, and it is the train jobs' only data input,
# `ancient` there: other pins are a new record (and a new spec), so every run retrains; deleting data/
# plans nothing, and the next train job fetches and decodes what it lacks. This job has no inputs or
# parameters on purpose: Snakemake does not weigh the own reasons (settings, code) of jobs downstream of
# a job it reruns for reasons of its own, when the files between them are ancient and present.
rule prepare_data:
    output:
        record=STUDY_DATA,
    log:
        log_path("prepare_data"),
    conda:
        CONDA_ENV
    params:
        # the record's name holds only their key; the job needs them in full
        sha256=config["data"]["sha256"],
        data_root=DATA_ROOT,
    script:
        "../scripts/prepare_data.py"
