"""A bad config stops the study before any job starts, with one line naming the key, the value and what is allowed.

Every case goes through study.validated_config, the function common.smk calls at start-up; a few
also go through `snakemake -n` to prove the workflow stops there and writes nothing.
"""

import copy
import math

import pytest
import torch
import yaml
from conftest import REPO, TINY_CONFIG, deep_update

from fmnist_initopt.config import ConfigError, validated_config

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
REPO_CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
DEFINED_INITS = "Defined: " + ", ".join(sorted(REPO_CONFIG["inits"]))
DEFINED_OPTIMIZERS = "Defined: " + ", ".join(sorted(REPO_CONFIG["optimizers"]))
DROP = object()  # marks a key to delete rather than set

# (case, overrides, phrases the single error line must contain: the key, the bad value, what is allowed)
BAD_CONFIGS = [
    ("init not defined", {"grid": {"inits": ["he", "lecun"]}}, ["grid.inits", "'lecun'", DEFINED_INITS]),
    (
        "optimizer not defined",
        {"grid": {"optimizers": ["sgd", "adagrad2"]}},
        ["grid.optimizers", "'adagrad2'", DEFINED_OPTIMIZERS],
    ),
    (
        "unknown torch init function",
        {"inits": {"he": {"function": "kaiming_normal"}}},
        ["inits.he.function", "'kaiming_normal'", "kaiming_normal_", "xavier_uniform_"],
    ),
    (
        "unknown torch optimizer class",
        {"optimizers": {"adam": {"class": "Adamm"}}},
        ["optimizers.adam.class", "'Adamm'", "AdamW", "RMSprop"],
    ),
    (
        "hyperparameter SGD does not accept",
        {"optimizers": {"sgd": {"kwargs": {"betas": [0.9, 0.99]}}}},
        ["optimizers.sgd.kwargs.betas", "[0.9, 0.99]", "torch.optim.SGD", "momentum, nesterov"],
    ),
    (
        "init argument value PyTorch rejects",
        {"inits": {"he": {"kwargs": {"mode": "fan_xx"}}}},
        ["inits.he.kwargs", "fan_xx", "fan_in", "fan_out"],
    ),
    (
        "negative lr",
        {"optimizers": {"adam": {"kwargs": {"lr": -1.0e-3}}}},
        ["optimizers.adam.kwargs.lr", "-0.001", "value > 0"],
    ),
    ("zero lr", {"optimizers": {"adam": {"kwargs": {"lr": 0}}}}, ["optimizers.adam.kwargs.lr", "is 0;", "value > 0"]),
    (
        "lr YAML read as text",
        {"optimizers": {"adam": {"kwargs": {"lr": "1e-3"}}}},
        ["optimizers.adam.kwargs.lr", '"1e-3"', "value > 0", "1.0e-3"],
    ),
    (
        "momentum 1",
        {"optimizers": {"sgd": {"kwargs": {"momentum": 1.0}}}},
        ["optimizers.sgd.kwargs.momentum", "1.0", "0 <= value < 1"],
    ),
    (
        "negative momentum",
        {"optimizers": {"sgd": {"kwargs": {"momentum": -0.1}}}},
        ["optimizers.sgd.kwargs.momentum", "-0.1", "0 <= value < 1"],
    ),
    ("zero epochs", {"training": {"epochs": 0}}, ["training.epochs", "is 0;", "an integer with value >= 1"]),
    ("epochs as text", {"training": {"epochs": "ten"}}, ["training.epochs", '"ten"', "an integer with value >= 1"]),
    (
        "batch larger than train_size",
        {"training": {"batch_size": 1000, "train_size": 500}},
        ["training.batch_size", "1000", "1 to 500"],
    ),
    (
        "batch larger than the training set",
        {"training": {"batch_size": 60000}},
        ["training.batch_size", "60000", "1 to 59900"],
    ),
    ("empty grid of inits", {"grid": {"inits": []}}, ["grid.inits", "is empty", "at least 1"]),
    ("empty grid of seeds", {"grid": {"seeds": []}}, ["grid.seeds", "is empty", "at least 1"]),
    ("grid without optimizers", {"grid": {"optimizers": DROP}}, ["grid.optimizers", "is missing", "required"]),
    ("duplicate seeds", {"grid": {"seeds": [1, 2, 1]}}, ["grid.seeds", "lists 1 more than once", "each value once"]),
    ("duplicate inits", {"grid": {"inits": ["he", "he"]}}, ["grid.inits", 'lists "he" more than once']),
    (
        "validation as large as the training set",
        {"validation": {"size": 60000}},
        ["validation.size", "60000", "1 to 59999"],
    ),
    ("target accuracy 0", {"report": {"target_accuracy": 0}}, ["report.target_accuracy", "is 0;", "0 < value <= 1"]),
    (
        "target accuracy above 1",
        {"report": {"target_accuracy": 1.5}},
        ["report.target_accuracy", "1.5", "0 < value <= 1"],
    ),
    ("top-level typo", {"trainig": {"epochs": 3}}, ["'trainig'", "did you mean 'training'?", "grid, inits"]),
    ("nested typo", {"training": {"epoch": 3}}, ["'epoch'", "under training", "did you mean 'epochs'?"]),
    (
        "data source with another scheme",
        {"data": {"sources": ["ftp://example.org/fmnist"]}},
        ["data.sources[0]", '"ftp://example.org/fmnist"', "a directory path", "an http(s) URL"],
    ),
    (
        "data source neither path nor URL",
        {"data": {"sources": ["fashion-mnist"]}},
        ["data.sources[0]", '"fashion-mnist"', "starting with ~, ./ or ../", "an http(s) URL"],
    ),
    (
        "name unfit for a file name",
        {"inits": {"He-1": {"function": "kaiming_normal_"}}},
        ["inits", '"He-1"', "lower-case letters and digits"],
    ),
    ("unknown device", {"device": "tpu"}, ["device", '"tpu"', "auto, cpu, cuda"]),
    # Issue 19: values that passed the start-up check and failed in a job, or failed unclearly.
    (
        "infinite lr",
        {"optimizers": {"adam": {"kwargs": {"lr": math.inf}}}},
        ["optimizers.adam.kwargs.lr", "is Infinity;", "a finite number with value > 0"],
    ),
    (
        "NaN momentum",
        {"optimizers": {"sgd": {"kwargs": {"momentum": math.nan}}}},
        ["optimizers.sgd.kwargs.momentum", "is NaN;", "a finite number with 0 <= value < 1"],
    ),
    (
        "NaN target accuracy",
        {"report": {"target_accuracy": math.nan}},
        ["report.target_accuracy", "is NaN;", "a finite number with 0 < value <= 1"],
    ),
    (
        "infinite argument the schema does not name",
        {"inits": {"orthogonal": {"kwargs": {"gain": -math.inf}}}},
        ["inits.orthogonal.kwargs.gain", "is -Infinity;", "a finite number"],
    ),
    (
        "split seed beyond NumPy's and PyTorch's generators",
        {"validation": {"split_seed": 10**20}},
        ["validation.split_seed", "is 100000000000000000000;", "0 <= value <= 4294967295", "NumPy's and PyTorch's"],
    ),
    (
        "seed written as a float",
        {"grid": {"seeds": [1.0]}},
        ["grid.seeds[0]", "is 1.0;", "an integer with 0 <= value", "(1, not 1.0)"],
    ),
    (
        "name ending in a newline",
        {"inits": {"hx\n": {"function": "xavier_normal_"}}},
        ["inits", 'named "hx\\n"', "lower-case letters and digits"],
    ),
    (
        "grid name ending in a newline",
        {"grid": {"inits": ["he", "hx\n"]}},
        ["grid.inits[1]", 'is "hx\\n"', "lower-case letters and digits"],
    ),
    (
        "study name ending in a newline",
        {"study": "main\n"},
        ["study", 'is "main\\n"', "Lower-case letters"],
    ),
    (
        "study named like the comparisons' directory",
        {"study": "compare"},
        ["study", 'is "compare"', 'not "compare"'],
    ),
    (
        "optimizer whose step needs a closure",
        {"optimizers": {"lbfgs": {"class": "LBFGS", "kwargs": {"lr": 0.1}}}},
        ["optimizers.lbfgs.class", 'is "LBFGS"', "TypeError", "'closure'", "step() needs no closure"],
    ),
    (
        "optimizer that needs sparse gradients",
        {"optimizers": {"sparseadam": {"class": "SparseAdam", "kwargs": {"lr": 1.0e-3}}}},
        [
            "optimizers.sparseadam.class",
            'is "SparseAdam"',
            "does not support dense gradients",
            "dense gradients on cpu",
        ],
    ),
    (
        "device-only flag on the CPU",
        {"optimizers": {"rmsprop": {"kwargs": {"capturable": True}}}},
        ["optimizers.rmsprop.kwargs.capturable", "is true:", "supported devices", "on cpu"],
    ),
    (
        "2-D-only init on the convolutions",
        {"inits": {"sparse": {"function": "sparse_", "kwargs": {"sparsity": 0.1}}}},
        ["inits.sparse.function", 'is "sparse_"', "Only tensors with 2 dimensions", "Conv2d (4-D)"],
    ),
    (
        "init argument of the wrong type",
        {"inits": {"he": {"kwargs": {"mode": 1}}}},
        ["inits.he.kwargs.mode", "is 1:", "torch.nn.init.kaiming_normal_", "AttributeError"],
    ),
]


def base_config() -> dict:
    repo_config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    return deep_update(repo_config, TINY_CONFIG)


def apply(config: dict, overrides: dict) -> dict:
    merged = deep_update(config, {k: v for k, v in overrides.items() if not isinstance(v, dict)})
    for key, value in overrides.items():
        if isinstance(value, dict):
            for inner, inner_value in value.items():
                if inner_value is DROP:
                    merged[key].pop(inner)
                elif isinstance(inner_value, dict) and isinstance(merged.get(key, {}).get(inner), dict):
                    merged[key][inner] = deep_update(merged[key][inner], inner_value)
                else:
                    merged.setdefault(key, {})[inner] = copy.deepcopy(inner_value)
    return merged


def test_the_base_config_of_these_cases_is_valid():
    validated_config(base_config(), SCHEMA)


@pytest.mark.parametrize("case,overrides,phrases", BAD_CONFIGS, ids=[case for case, _, _ in BAD_CONFIGS])
def test_bad_config_is_one_line_naming_key_value_and_what_is_allowed(case, overrides, phrases):
    with pytest.raises(ConfigError) as raised:
        validated_config(apply(base_config(), overrides), SCHEMA)
    message = str(raised.value)
    assert message.startswith("Invalid config: ")
    assert "\n" not in message
    for phrase in phrases:
        assert phrase in message, f"{case}: {phrase!r} missing from: {message}"


# Cases from each stage of the check (the schema, PyTorch's arguments, a real training step), with the
# YAML spellings of issue 19 (.inf, a newline in a name); test_workflow has four more.
SNAKEMAKE_CASES = [
    "duplicate seeds",
    "infinite lr",
    "name ending in a newline",
    "hyperparameter SGD does not accept",
    "optimizer whose step needs a closure",
]


@pytest.mark.parametrize("case", SNAKEMAKE_CASES)
def test_snakemake_stops_before_any_job_with_that_line(study, case):
    overrides, phrases = next((o, p) for c, o, p in BAD_CONFIGS if c == case)
    study.config_path.write_text(yaml.safe_dump(apply(study.config(), overrides), sort_keys=False))
    result = study.snakemake("-n", "--cores", "1", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert all(phrase in output for phrase in phrases), output
    assert output.count("Invalid config") == 1
    assert not (study.root / "results").exists() and not (study.root / "data").exists()


def test_relative_and_missing_source_directories_are_accepted_at_start_up():
    """Whether a directory exists is a fetch-time question: the default list names Debian's directory,
    which other machines lack, and fetching moves on to the next source (see test_bad_data)."""
    config = apply(base_config(), {"data": {"sources": ["./fmnist", "../elsewhere", "/no/such/dir", "~/fmnist"]}})
    validated_config(config, SCHEMA)


@pytest.mark.skipif(torch.cuda.is_available(), reason="where PyTorch sees a GPU, a cuda config is checked on it")
def test_a_gpu_config_is_accepted_and_checked_on_the_cpu_of_a_machine_without_one():
    """A cluster's login node has no GPU: a `device: cuda` config is checked there on its CPU (the jobs,
    on GPU nodes, find other GPUs in the check's key and repeat it on theirs) instead of being refused."""
    validated_config(apply(base_config(), {"device": "cuda"}), SCHEMA)
    lbfgs = {"device": "cuda", "optimizers": {"lbfgs": {"class": "LBFGS", "kwargs": {"lr": 0.1}}}}
    with pytest.raises(ConfigError, match=r"optimizers\.lbfgs\.class .* training step of the brief's CNN on cpu"):
        validated_config(apply(base_config(), lbfgs), SCHEMA)
