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
