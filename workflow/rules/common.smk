# Shared by the other .smk files: imports, config validation, the output paths (declared once here),
# wildcard constraints and input functions, in that order.

import os
from pathlib import Path

from fmnist_initopt import cost, study
from fmnist_initopt.config import ConfigError, validated_config
from fmnist_initopt.data import (
    FILE_NAMES,
    PREPARED_MANIFEST,
    PREPARED_SUBDIR,
    RAW_SUBDIR,
    prepared_file,
)

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
RAW_FILE = f"data/{RAW_SUBDIR}/{{raw_name}}"
RAW_FILES = [RAW_FILE.format(raw_name=name) for name in FILE_NAMES]
# The raw files decoded once (rule prepare_data); the manifest records every array's checksum.
PREPARED_DIR = f"data/{PREPARED_SUBDIR}"
PREPARED_ARRAYS = [f"{PREPARED_DIR}/{prepared_file(name)}" for name in FILE_NAMES]
PREPARED_MANIFEST_FILE = f"{PREPARED_DIR}/{PREPARED_MANIFEST}"
# {model} is empty for the brief's CNN (depth 0) and "_depth<N>" otherwise, so depth-0 runs keep their paths.
RUN_DIR = "results/runs/{init}_{optimizer}{model}_seed{seed}"
SWEEP_DIR = "results/sweep/{init}_{optimizer}_lr{lr}_seed{seed}"
# A run's resume point, named after its directory (unique for grid and sweep runs alike).
CHECKPOINT_DIR = "results/checkpoints"
SUMMARY_CSV = "results/summary.csv"
COMBINATIONS_CSV = "results/combinations.csv"
# Isolated per-step cost of each grid (init, optimizer), measured interleaved (rule step_cost).
STEP_COST_CSV = "results/step_cost.csv"
FINDINGS_MD = "results/findings.md"
# findings.md as one self-contained page (figures embedded): the report's first item.
FINDINGS_HTML = "results/findings.html"
SIGNAL_SECTION = "results/diagnostics.md"
LR_SWEEP_SECTION = "results/lr_sweep.md"
DEPTH_SECTION = "results/depth.md"
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
}


def figure_path(name):
    return f"results/figures/{name}.png"


def report_figure(name, category):
    """A figure as a report item, captioned by its .rst file; `category` is a key of REPORT_CATEGORIES."""
    return report(
        figure_path(name),
        caption=f"../report/{name}.rst",
        category=REPORT_CATEGORIES[category],
    )


# --- Wildcard constraints: names only from the config, so no target points outside results/ -----
wildcard_constraints:
    init="|".join(sorted(config["inits"])),
    optimizer="|".join(sorted(config["optimizers"])),
    seed=r"0|[1-9][0-9]*",
    raw_name="|".join(FILE_NAMES),
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


TRAINING_CODE = package_code(
    "training",
    "checkpoint",
    "diagnostics",
    "model",
    "optimizers",
    "data",
    "study",
    "environment",
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


def remove_finished_checkpoints():
    """A finished run keeps its last checkpoint while Snakemake runs (a requeued or retried group of
    runs then re-evaluates the runs it had finished instead of retraining them); the hooks in the
    Snakefile remove it when a run succeeds, and at the start of the next run, so that a forced
    rerun retrains."""
    run_dirs = [Path(RUN_DIR).parent, Path(SWEEP_DIR).parent]
    for saved in Path(CHECKPOINT_DIR).glob("*.pt"):
        if any((runs / saved.stem / "metrics.json").is_file() for runs in run_dirs):
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
    """Whether the grid has two or more depths to compare (results/depth.md)."""
    return len(study.depths(config)) > 1


def report_outputs():
    return [
        FINDINGS_MD,
        FINDINGS_HTML,
        *(figure_path(name) for name in findings_figures()),
    ]
