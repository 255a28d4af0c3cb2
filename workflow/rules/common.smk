import os
import sys
from pathlib import Path

# The scripts directory holds the importable code that both the rules and the scripts use.
sys.path.insert(0, str(Path(workflow.basedir) / "workflow" / "scripts"))

from fmnist_data import FILE_NAMES, RAW_SUBDIR  # noqa: E402
from study import ConfigError, canonical_json, grid_runs, run_spec, validated_config  # noqa: E402

CONFIG_SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
DATA_ROOT = "data"
RAW_FILE = f"{DATA_ROOT}/{RAW_SUBDIR}/{{raw_name}}"
RAW_FILES = [RAW_FILE.format(raw_name=name) for name in FILE_NAMES]
RUN_METRICS = "results/runs/{init}_{optimizer}_seed{seed}/metrics.json"
RUN_LOG = "results/runs/{init}_{optimizer}_seed{seed}/train.log"


def code_inputs(*names):
    """Code as an input: editing a script makes the outputs that depend on it out of date.
    Paths are relative to the working directory, so moving the checkout does not look like a change."""
    return sorted(os.path.relpath(Path(workflow.basedir) / "workflow" / "scripts" / name) for name in names)


TRAINING_CODE = code_inputs("train.py", "training.py", "diagnostics.py", "model.py", "fmnist_data.py", "study.py")


try:
    validated_config(config, CONFIG_SCHEMA)
except ConfigError as error:
    raise WorkflowError(str(error)) from None


wildcard_constraints:
    init="|".join(sorted(config["inits"])),
    optimizer="|".join(sorted(config["optimizers"])),
    seed=r"0|[1-9][0-9]*",
    raw_name="|".join(FILE_NAMES),


def run_metrics():
    return [
        RUN_METRICS.format(init=init, optimizer=optimizer, seed=seed)
        for init, optimizer, seed in grid_runs(config)
    ]


def spec_of(wildcards):
    """The settings that define one run, as one canonical string: they, and nothing else, decide a rerun."""
    spec = run_spec(config, wildcards.init, wildcards.optimizer, int(wildcards.seed))
    return canonical_json(spec.as_dict())


# The analysis (report.smk): its files, and the settings that reach only its rules.
from findings import FIGURE_CAPTIONS  # noqa: E402

SUMMARY_CSV = "results/summary.csv"
COMBINATIONS_CSV = "results/combinations.csv"
FINDINGS_MD = "results/findings.md"
FIGURES_DIR = "results/figures"
FIGURE_NAMES = list(FIGURE_CAPTIONS)
# Report settings reach only the analysis rules: changing them redraws the report, never retrains.
REPORT_PARAMS = {
    "target_accuracy": config["report"]["target_accuracy"],
    "confidence": config["report"]["confidence"],
}


def report_outputs():
    return [FINDINGS_MD, *(f"{FIGURES_DIR}/{name}.png" for name in FIGURE_NAMES)]


# --- Signal-propagation diagnostics and the optional learning-rate sweep (workflow/rules/diagnostics.smk) ---
import lr_sweep  # noqa: E402

SWEEP_METRICS = "results/sweep/{init}_{optimizer}_lr{lr}_seed{seed}/metrics.json"
SWEEP_LOG = "results/sweep/{init}_{optimizer}_lr{lr}_seed{seed}/train.log"
SIGNAL_FIGURES = {
    "at_init": "results/figures/signal_at_init.png",
    "over_epochs": "results/figures/signal_grad_norms.png",
}
SIGNAL_SECTION = "results/diagnostics.md"
LR_SWEEP_OUTPUTS = {"figure": "results/figures/lr_sweep.png", "section": "results/lr_sweep.md"}

try:
    lr_sweep.check_sweep(config)
except ValueError as error:
    raise WorkflowError(f"Invalid config: {error}") from None


wildcard_constraints:
    lr=lr_sweep.LR_TOKEN_PATTERN,


def sweep_metrics():
    """Every sweep point's metrics.json; a point that is a grid run is that run's file."""
    return [
        RUN_METRICS.format(init=init, optimizer=optimizer, seed=seed)
        if lr_sweep.is_grid_run(config, optimizer, lr, seed)
        else SWEEP_METRICS.format(init=init, optimizer=optimizer, lr=lr_sweep.lr_token(lr), seed=seed)
        for init, optimizer, lr, seed in lr_sweep.sweep_points(config)
    ]


def sweep_spec_of(wildcards):
    spec = lr_sweep.sweep_spec(config, wildcards.init, wildcards.optimizer, wildcards.lr, int(wildcards.seed))
    return canonical_json(spec.as_dict())


def diagnostic_sections():
    """Markdown sections the findings include: the signal section, and the sweep's when it is on."""
    return [SIGNAL_SECTION] + ([LR_SWEEP_OUTPUTS["section"]] if lr_sweep.enabled(config) else [])


def diagnostic_figures():
    return list(SIGNAL_FIGURES.values()) + ([LR_SWEEP_OUTPUTS["figure"]] if lr_sweep.enabled(config) else [])
