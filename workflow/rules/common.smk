import sys
from pathlib import Path

from snakemake.utils import validate

# The scripts directory holds the importable code that both the rules and the scripts use.
sys.path.insert(0, str(Path(workflow.basedir) / "workflow" / "scripts"))

from fmnist_data import FILE_NAMES, RAW_SUBDIR  # noqa: E402
from study import canonical_json, check_config, describe_schema_error, grid_runs, run_spec  # noqa: E402

CONFIG_SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
DATA_ROOT = "data"
RAW_FILES = [f"{DATA_ROOT}/{RAW_SUBDIR}/{name}" for name in FILE_NAMES]
RUN_METRICS = "results/runs/{init}_{optimizer}_seed{seed}/metrics.json"
RUN_LOG = "results/runs/{init}_{optimizer}_seed{seed}/train.log"
# Training code is an input of every training job: editing it makes those runs out of date.
TRAINING_CODE = sorted(
    str(Path(workflow.basedir) / "workflow" / "scripts" / name)
    for name in ("train.py", "training.py", "diagnostics.py", "model.py", "fmnist_data.py", "study.py")
)


def validated_config(config):
    """Schema-check (filling defaults), then cross-check names against the config and PyTorch."""
    try:
        validate(config, str(CONFIG_SCHEMA))
    except Exception as error:  # Snakemake's message buries the key in a schema dump
        raise WorkflowError(describe_schema_error(config, CONFIG_SCHEMA)) from None
    try:
        check_config(config)
    except ValueError as error:
        raise WorkflowError(f"Invalid config: {error}") from None
    return config


validated_config(config)


wildcard_constraints:
    init="|".join(sorted(config["inits"])),
    optimizer="|".join(sorted(config["optimizers"])),
    seed=r"0|[1-9][0-9]*",


def run_metrics():
    return [
        RUN_METRICS.format(init=init, optimizer=optimizer, seed=seed)
        for init, optimizer, seed in grid_runs(config)
    ]


def spec_of(wildcards):
    """The settings that define one run, as one canonical string: they, and nothing else, decide a rerun."""
    spec = run_spec(config, wildcards.init, wildcards.optimizer, int(wildcards.seed))
    return canonical_json(spec.as_dict())


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


def diagnostics_outputs():
    outputs = [*SIGNAL_FIGURES.values(), SIGNAL_SECTION]
    if lr_sweep.enabled(config):
        outputs += LR_SWEEP_OUTPUTS.values()
    return outputs
