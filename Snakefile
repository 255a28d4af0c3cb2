# fmnist-initopt: which weight initialisation and optimizer to pair, measured on FashionMNIST.
# Run: snakemake --cores 2   (preview: add --configfile config/quick.yaml)

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/cost.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/diagnostics.smk"
include: "workflow/rules/depth.smk"
include: "workflow/rules/compare.smk"
include: "workflow/rules/export.smk"


onstart:
    tidy_checkpoints_at_start(workflow)
    plan_progress_at_start(workflow)


onsuccess:
    remove_finished_checkpoints()


rule all:
    default_target: True
    input:
        run_metrics(),
        report_outputs(),
