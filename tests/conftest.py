from __future__ import annotations

import copy
import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir
from synthetic import synthetic_arrays, write_synthetic_source

from fmnist_initopt.config import PASSED_CHECKS_FILE, validated_config
from fmnist_initopt.data import Splits
from fmnist_initopt.study import RunSpec

REPO = Path(__file__).resolve().parents[1]

# Property tests: the same examples every run (derandomize), so no example database is needed, and
# Hypothesis' own cache goes to /tmp, out of the repository.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "fmnist_initopt-hypothesis")
settings.register_profile(
    "project",
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile("project")

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
# What a study workspace needs from the repository; results/ and data/ start empty.
WORKFLOW_FILES = ("Snakefile", "workflow", "src", "config", "envs", "slurm")

TINY_CONFIG = {
    "grid": {"inits": ["he", "xavier"], "optimizers": ["sgd", "adam", "rmsprop"], "seeds": [1]},
    "training": {"epochs": 2, "batch_size": 32, "train_size": None},
    "validation": {"source": "holdout", "size": 100, "split_seed": 0},
    "device": "cpu",
    "report": {"target_accuracy": 0.5},
    # one step per combination: the study tests check the rule runs, not the timing
    "step_cost": {"steps": 1, "repeats": 1},
}


def deep_update(base: dict, overrides: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_update(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class Study:
    """A copy of the workflow in a temporary directory, run on synthetic data."""

    def __init__(self, root: Path, checksums: dict[str, str], source: Path):
        self.root = root
        self.checksums = checksums
        self.source = source
        # the `snakemake` run that finished the study, where a fixture ran it (finished_study)
        self.finished_by: subprocess.CompletedProcess | None = None

    @property
    def config_path(self) -> Path:
        return self.root / "config" / "config.yaml"

    def config(self) -> dict:
        return yaml.safe_load(self.config_path.read_text())

    def write_config(self, overrides: dict | None = None, base: dict | None = None) -> dict:
        with open(REPO / "config" / "config.yaml") as handle:
            repo_config = yaml.safe_load(handle)
        config = deep_update(repo_config if base is None else base, TINY_CONFIG)
        config["data"] = {"sources": [str(self.source)], "sha256": self.checksums}
        config = deep_update(config, overrides or {})
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        return config

    def snakemake(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        result = subprocess.run(
            [SNAKEMAKE, *args], cwd=self.root, capture_output=True, text=True, timeout=timeout, env=env
        )
        if check and result.returncode != 0:
            raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    @property
    def results(self) -> Path:
        """The current config's study directory, results/<study>/."""
        return self.root / "results" / self.config().get("study", "main")

    def metrics(self, run_id: str) -> dict:
        return json.loads((self.results / "runs" / run_id / "metrics.json").read_text())


@pytest.fixture(scope="session")
def synthetic_source(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    directory = tmp_path_factory.mktemp("synthetic-fmnist")
    return directory, write_synthetic_source(directory)


# Where the workflow remembers the PyTorch checks that passed (common.smk's cache_dir).
PYTORCH_CHECKS = Path(".snakemake") / "fmnist-initopt" / PASSED_CHECKS_FILE


@functools.cache
def passed_tiny_pytorch_check() -> bytes:
    """The workflow's record of a passed PyTorch check of TINY_CONFIG's inits and optimizers, made once per
    session. Every workspace is a copy of the same code, so the check's outcome is the same in each: it is
    run here once instead of once per workspace (~5 s each). A config with other inits, optimizers, depth or
    device has another key and is still checked by the workflow; a failing check is never recorded."""
    with open(REPO / "config" / "config.yaml") as handle:
        config = deep_update(yaml.safe_load(handle), TINY_CONFIG)
    cache_dir = Path(tempfile.mkdtemp(prefix="fmnist_initopt-checks-"))
    validated_config(config, REPO / "workflow" / "schemas" / "config.schema.yaml", cache_dir=cache_dir)
    record = (cache_dir / PASSED_CHECKS_FILE).read_bytes()
    shutil.rmtree(cache_dir)
    return record


def make_study(root: Path, synthetic_source, overrides: dict | None = None) -> Study:
    """A copy of the workflow in `root` on the synthetic data, its config TINY_CONFIG plus `overrides`; the
    workspace starts with the passed PyTorch check of TINY_CONFIG (see passed_tiny_pytorch_check)."""
    root.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy2(source, root / name)
    (root / PYTORCH_CHECKS).parent.mkdir(parents=True, exist_ok=True)
    (root / PYTORCH_CHECKS).write_bytes(passed_tiny_pytorch_check())
    directory, checksums = synthetic_source
    study = Study(root, checksums, directory)
    study.write_config(overrides)
    return study


def copy_study(study: Study, root: Path) -> Study:
    """A private copy of `study` in `root`: its results, timestamps and Snakemake's records kept."""
    shutil.copytree(study.root, root, symlinks=True)
    return Study(root, study.checksums, study.source)


@pytest.fixture
def study(tmp_path, synthetic_source) -> Study:
    """A fresh tiny study (2 inits x 3 optimizers x 1 seed, 2 epochs) on synthetic data, not yet run."""
    return make_study(tmp_path / "study", synthetic_source)


@pytest.fixture(scope="session")
def finished_study(tmp_path_factory, synthetic_source) -> Study:
    """The tiny study run to the end once per session (`snakemake --cores 2`). Shared: never change it,
    change a copy (finished_copy)."""
    study = make_study(tmp_path_factory.mktemp("finished") / "study", synthetic_source)
    study.finished_by = study.snakemake("--cores", "2")
    return study


# The smallest study with every category of the HTML report: two grid runs, and two more lrs per grid run for
# the learning-rate sweep (the default lr's runs are the grid's).
SWEEP_STUDY = {
    "grid": {"inits": ["he", "xavier"], "optimizers": ["sgd"], "seeds": [1]},
    "training": {"epochs": 1, "train_size": 200},
    "lr_sweep": {"enabled": True, "seeds": [1], "learning_rates": {"sgd": [0.001, 0.1]}},
}


@pytest.fixture(scope="session")
def finished_sweep_study(tmp_path_factory, synthetic_source) -> Study:
    """SWEEP_STUDY run once per session the way `make report` runs a study: the study, then
    results/main/report.html. Shared: read it, never change it."""
    study = make_study(tmp_path_factory.mktemp("sweep") / "study", synthetic_source, SWEEP_STUDY)
    study.finished_by = study.snakemake("--cores", "2", "--report", "results/main/report.html", "--report-after-run")
    return study


@pytest.fixture
def finished_copy(finished_study, tmp_path) -> Study:
    """A private copy of the finished tiny study, to rerun, edit or damage."""
    copied = copy_study(finished_study, tmp_path / "finished-copy")
    copied.finished_by = finished_study.finished_by
    return copied


def planned_jobs(result: subprocess.CompletedProcess) -> set[tuple[str, str]]:
    """(rule, first output) of every job a `snakemake -n` run printed; ("all", "") for the target rule."""
    jobs, rule = set(), None
    for line in (result.stdout + result.stderr).splitlines():
        text = line.strip()
        words = text.split()
        if len(words) == 2 and words[0] in ("rule", "localrule") and words[1].endswith(":"):
            rule = words[1][:-1]
            if rule == "all":
                jobs.add(("all", ""))
                rule = None
        elif rule and text.startswith("output: "):
            jobs.add((rule, text[len("output: ") :].split(", ")[0]))
            rule = None
    return jobs


def synthetic_splits(n_train=400, n_test=200) -> Splits:
    arrays = {
        k: torch.from_numpy(v.astype("int64") if "labels" in k else v)
        for k, v in synthetic_arrays(n_train, n_test).items()
    }
    images, labels = arrays["train-images-idx3-ubyte"].unsqueeze(1), arrays["train-labels-idx1-ubyte"]
    return Splits(
        train_x=images[100:],
        train_y=labels[100:],
        val_x=images[:100],
        val_y=labels[:100],
        test_x=arrays["t10k-images-idx3-ubyte"].unsqueeze(1),
        test_y=arrays["t10k-labels-idx1-ubyte"],
        val_source="holdout",
    )


def spec(seed=1, optimizer="adam", epochs=2, **changes) -> RunSpec:
    classes = {"adam": ("Adam", {"lr": 0.001}), "sgd": ("SGD", {"lr": 0.01, "momentum": 0.9})}
    fields = dict(
        init="he",
        init_function="kaiming_normal_",
        init_kwargs={"mode": "fan_in", "nonlinearity": "relu"},
        optimizer=optimizer,
        optimizer_class=classes[optimizer][0],
        optimizer_kwargs=classes[optimizer][1],
        seed=seed,
        epochs=epochs,
        batch_size=32,
        split={},
    )
    return RunSpec(**{**fields, **changes})


def without_timings(metrics: dict) -> dict:
    """A run's metrics minus what depends on the machine's speed, for comparing two runs."""
    stripped = {k: v for k, v in metrics.items() if k not in ("training_seconds", "cost")}
    stripped["history"] = {k: v for k, v in metrics["history"].items() if k != "epoch_seconds"}
    return stripped


def metrics_schema() -> dict:
    return yaml.safe_load((REPO / "workflow" / "schemas" / "metrics.schema.yaml").read_text())


def reference_loop():
    """The benchmark's plain reimplementation of the brief (its CNN is the brief's, as written there),
    loaded from its file: benchmarks/ is no package."""
    location = importlib.util.spec_from_file_location("reference_loop", REPO / "benchmarks" / "reference_loop.py")
    module = importlib.util.module_from_spec(location)
    location.loader.exec_module(module)
    return module
