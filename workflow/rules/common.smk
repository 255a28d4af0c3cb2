# Shared by the other .smk files: imports, config validation, the output paths (declared once here),
# wildcard constraints and input functions, in that order.

import os
import time
from pathlib import Path

from fmnist_initopt import cost, progress, study
from fmnist_initopt.config import ConfigError, validated_config
from fmnist_initopt.data import prepared_dir

# Every job parses the workflow again; a PyTorch check that passed is remembered under .snakemake/
# (see fmnist_initopt.config), so only the first parse after a change imports PyTorch.
try:
    validated_config(
        config,
        Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml",
        cache_dir=Path(".snakemake") / "fmnist-initopt",
    )
except ConfigError as error:
    raise WorkflowError(str(error)) from None


# With --sdm conda, every job runs in the environment of envs/cluster.yaml (the pins of
# requirements.txt plus this package); without it, jobs run in the current environment.
CONDA_ENV = "../../envs/cluster.yaml"


# --- Outputs: every path the workflow writes, named once ---------------------------------------
# The data is shared by every study; it is pinned by checksum, so one copy serves them all.
DATA_ROOT = "data"
# Everything else belongs to one study (config key `study`): no other config writes under its directory,
# so a preview or a sweep never replaces the runs or the report of another study.
STUDY_DIR = f"results/{config['study']}"
# The data this study trains on, written by prepare_data: named by the key of the pinned checksums.
STUDY_DATA = (
    f"{STUDY_DIR}/data/{prepared_dir(DATA_ROOT, config['data']['sha256']).name}.json"
)
# {model} is empty for the brief's CNN (depth 0) and "_depth<N>" otherwise, so depth-0 runs keep their paths.
RUN_NAME = "{init}_{optimizer}{model}_seed{seed}"
SWEEP_NAME = "{init}_{optimizer}_lr{lr}_seed{seed}"
RUN_DIR = f"{STUDY_DIR}/runs/{RUN_NAME}"
SWEEP_DIR = f"{STUDY_DIR}/sweep/{SWEEP_NAME}"
# While it trains: the plan of this invocation (onstart) and one record per run, a log of its job (progress.py).
PROGRESS_DIR = str(progress.study_progress_dir(STUDY_DIR))
# A run's resume point, named after its directory (unique for grid and sweep runs alike).
CHECKPOINT_DIR = f"{STUDY_DIR}/checkpoints"
LOG_DIR = f"{STUDY_DIR}/logs"
SUMMARY_CSV = f"{STUDY_DIR}/summary.csv"
COMBINATIONS_CSV = f"{STUDY_DIR}/combinations.csv"
# Isolated per-step cost of each grid (init, optimizer), measured interleaved (rule step_cost).
STEP_COST_CSV = f"{STUDY_DIR}/step_cost.csv"
FINDINGS_MD = f"{STUDY_DIR}/findings.md"
# findings.md as one self-contained page (figures embedded): the report's first item.
FINDINGS_HTML = f"{STUDY_DIR}/findings.html"
SIGNAL_SECTION = f"{STUDY_DIR}/diagnostics.md"
LR_SWEEP_SECTION = f"{STUDY_DIR}/lr_sweep.md"
DEPTH_SECTION = f"{STUDY_DIR}/depth.md"
# This study against another (config key compare_with; rules in compare.smk), outside both studies' directories.
COMPARE_DIR = f"results/compare/{config['compare_with']}-vs-{config['study']}"
COMPARE_MD = f"{COMPARE_DIR}/compare.md"
COMPARE_FIGURE = f"{COMPARE_DIR}/compare.png"
# compare.md as one self-contained page (figure embedded): the report's comparison item.
COMPARE_HTML = f"{COMPARE_DIR}/compare.html"
# `snakemake export_mlflow` (export.smk): the default MLflow store, and the record of what the export wrote.
MLFLOW_DIR = f"{STUDY_DIR}/mlruns"
MLFLOW_EXPORT = f"{MLFLOW_DIR}/export.json"
# Every figure: file stem -> title (used in findings.md); its report caption is workflow/report/<stem>.rst.
FIGURES = {
    "learning_curves": "Training loss and validation accuracy per epoch",
    "accuracy_and_time": "Final test accuracy and the runs' own time per combination",
    "epochs_to_target": "Convergence speed: epochs to the target, epoch-1 and mean validation accuracy",
    "init_weights": "Per-layer weight distributions right after initialisation",
    "signal_at_init": "Activation std and weight-gradient norm by layer at initialisation",
    "signal_grad_norms": "Weight-gradient norm by layer over the epochs",
    "lr_sweep": "Final validation accuracy against the learning rate",
    "depth": "Validation accuracy against depth per init and optimizer",
}
SUMMARY_FIGURES = [
    "learning_curves",
    "accuracy_and_time",
    "epochs_to_target",
    "init_weights",
]
SIGNAL_FIGURES = ["signal_at_init", "signal_grad_norms"]


# Snakemake's report lists its categories sorted by name: the numbers put them in reading order.
REPORT_CATEGORIES = {
    "findings": "1. Findings",
    "figures": "2. Figures",
    "diagnostics": "3. Diagnostics",
    "sweep": "4. Learning-rate sweep",
    "depth": "5. Depth study",
    "tables": "6. Tables",
    "compare": "7. Comparison with another study",
}


def figure_path(name):
    return f"{STUDY_DIR}/figures/{name}.png"


def log_path(name):
    return f"{LOG_DIR}/{name}.log"


def report_figure(name, category):
    """A figure as a report item, captioned by its .rst file; `category` is a key of REPORT_CATEGORIES."""
    return report(
        figure_path(name),
        caption=f"../report/{name}.rst",
        category=REPORT_CATEGORIES[category],
    )


# --- Wildcard constraints: names only from the config, so no target points outside its study
wildcard_constraints:
    init="|".join(sorted(config["inits"])),
    optimizer="|".join(sorted(config["optimizers"])),
    seed=r"0|[1-9][0-9]*",
    lr=study.LR_TOKEN_PATTERN,
    model=study.MODEL_SUFFIX_PATTERN,


# --- Input functions and parameters ---------------------------------------------------------------
# Report settings reach only the analysis rules: changing them redraws the report, never retrains.
REPORT_PARAMS = {
    "target_accuracy": config["report"]["target_accuracy"],
    "confidence": config["report"]["confidence"],
}


def package_code(*modules):
    """Package modules as inputs: editing one makes the outputs computed with it out of date.
    Paths are relative to the working directory, so moving the checkout does not look like a change.
    """
    package = Path(workflow.basedir) / "src" / "fmnist_initopt"
    return sorted(os.path.relpath(package / f"{module}.py") for module in modules)


# The code a train job computes with; its checkpoints are bound to the same modules' hash.
TRAINING_CODE = package_code(*study.TRAINING_MODULES)
# The statistics layer the report sections decide with: module names for package_code(...).
STATISTICS_CODE = (
    "stats",
    "signflip",
    "maxstat",
    "units",
    "levels",
    "best",
    "anova",
    "power",
)


def run_path(init, optimizer, depth, seed):
    return f"{RUN_DIR}/metrics.json".format(
        init=init, optimizer=optimizer, model=study.model_suffix(depth), seed=seed
    )


def run_metrics(depths=None):
    """Every grid run's metrics.json at each of `depths`; by default at the main depth only
    (study.main_depth), so an analysis written for one model never mixes depths."""
    depths = [study.main_depth(config)] if depths is None else depths
    return [
        run_path(init, optimizer, depth, seed)
        for depth in depths
        for init, optimizer, seed in study.grid_runs(config)
    ]


def spec_of(wildcards):
    """The settings that define one run, as one canonical string: they, and nothing else, decide a rerun."""
    spec = study.run_spec(
        config,
        wildcards.init,
        wildcards.optimizer,
        int(wildcards.seed),
        study.depth_of_suffix(wildcards.model),
    )
    return study.canonical_json(spec.as_dict())


def sweep_spec_of(wildcards):
    spec = study.sweep_spec(
        config, wildcards.init, wildcards.optimizer, wildcards.lr, int(wildcards.seed)
    )
    return study.canonical_json(spec.as_dict())


def checkpoint_of(wildcards, output):
    return f"{CHECKPOINT_DIR}/{Path(output.metrics).parent.name}.pt"


def finished_checkpoints():
    """Checkpoints of runs whose metrics.json exists."""
    run_dirs = [Path(RUN_DIR).parent, Path(SWEEP_DIR).parent]
    return [
        saved
        for saved in Path(CHECKPOINT_DIR).glob("*.pt")
        if any((runs / saved.stem / "metrics.json").is_file() for runs in run_dirs)
    ]


def remove_finished_checkpoints():
    """A finished run keeps its last checkpoint while Snakemake runs (a requeued or retried group of
    runs then re-evaluates the runs it had finished instead of retraining them); the onsuccess hook
    removes it once Snakemake has succeeded."""
    for saved in finished_checkpoints():
        saved.unlink(missing_ok=True)


def forced_by_the_user(job, dag, settings):
    """Whether the user forced `job` (--forcerun/-R of its rule or output, --forceall, --force of a target).
    Snakemake also counts outputs that --rerun-incomplete redoes as forced: those runs must resume.
    """
    if {job.rule} & dag.forcerules:
        return True
    named = set(settings.forcerun) | (
        set(settings.targets) if settings.forcetargets else set()
    )
    named = {os.path.normpath(str(name)) for name in named}
    return any(os.path.normpath(str(output)) in named for output in job.output)


def training_jobs(workflow):
    """The train and train_sweep jobs this invocation runs, each with its spec."""
    spec_functions = {"train": spec_of, "train_sweep": sweep_spec_of}
    return [
        (job, study.run_spec_from_json(spec_functions[job.rule.name](job.wildcards)))
        for job in workflow.dag.needrun_jobs()
        if job.rule.name in spec_functions
    ]


def plan_progress_at_start(workflow):
    """Before any job runs (the onstart hook): the runs this invocation trains, by their record's name,
    with their epochs, so that every epoch line can estimate the study's time left (progress.py). An
    invocation that trains nothing (a report, an export) leaves the last plan alone.
    """
    runs = {
        Path(job.log.progress).stem: spec.epochs
        for job, spec in training_jobs(workflow)
    }
    if runs:
        progress.write_plan(Path(PROGRESS_DIR), config["study"], runs, time.time())


def tidy_checkpoints_at_start(workflow):
    """Before any job runs (the onstart hook, which group jobs skip with --no-hooks, so a requeued group
    still resumes): a run the user forces retrains from epoch 1, so its checkpoint goes; a run about to
    run for any other reason resumes from its checkpoint, even if a metrics.json was written as it was
    killed (Snakemake then marks it incomplete); every other finished run's checkpoint goes.
    """
    to_run = {
        Path(checkpoint_of(job.wildcards, job.output)): forced_by_the_user(
            job, workflow.dag, workflow.dag_settings
        )
        for job, _ in training_jobs(workflow)
    }
    finished = set(finished_checkpoints())
    for saved in Path(CHECKPOINT_DIR).glob("*.pt"):
        if to_run.get(saved, saved in finished):
            saved.unlink(missing_ok=True)


def sweep_metrics():
    """Every sweep point's metrics.json (the sweep tunes depth 0); a point that is a grid run is that run's file."""
    return [
        (
            run_path(init, optimizer, 0, seed)
            if study.is_grid_run(config, optimizer, lr, seed)
            else f"{SWEEP_DIR}/metrics.json".format(
                init=init, optimizer=optimizer, lr=study.lr_token(lr), seed=seed
            )
        )
        for init, optimizer, lr, seed in study.sweep_points(config)
    ]


def sweep_on():
    return study.enabled(config)


def diagnostic_sections():
    """Markdown sections the findings include: the signal section, the sweep's and the depth study's when on."""
    return (
        [SIGNAL_SECTION]
        + ([LR_SWEEP_SECTION] if sweep_on() else [])
        + ([DEPTH_SECTION] if depth_on() else [])
    )


def diagnostic_figures():
    return (
        SIGNAL_FIGURES
        + (["lr_sweep"] if sweep_on() else [])
        + (["depth"] if depth_on() else [])
    )


def findings_figures():
    """Every figure findings.md shows, in its order."""
    return SUMMARY_FIGURES + diagnostic_figures()


def depth_on():
    """Whether the grid has two or more depths to compare (depth.md)."""
    return len(study.depths(config)) > 1


def report_outputs():
    return [
        FINDINGS_MD,
        FINDINGS_HTML,
        *(figure_path(name) for name in findings_figures()),
        *([COMPARE_HTML] if config["compare_with"] else []),
    ]
