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
# Training code is an input of every training job: editing it makes those runs out of date.
TRAINING_CODE = sorted(
    str(Path(workflow.basedir) / "workflow" / "scripts" / name)
    for name in ("train.py", "training.py", "model.py", "fmnist_data.py", "study.py")
)


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
