"""One end-to-end check on the real FashionMNIST, at a subset size that takes about a minute."""

import os
from pathlib import Path

import pytest
import yaml
from conftest import REPO, make_study

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
# CI installs the Debian package (make test); elsewhere the tests say what they need. They never probe the network.
pytestmark = pytest.mark.skipif(
    not DEBIAN_DIR.is_dir() and os.environ.get("CI") != "true",
    reason=f"real FashionMNIST not installed: apt-get install dataset-fashion-mnist (puts it in {DEBIAN_DIR})",
)


def real_data_config(study) -> dict:
    """The study's config with the real sources and the published checksums pinned in the schema."""
    repo_config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    config = study.config()
    config["data"] = {**repo_config["data"], "sha256": schema["properties"]["data"]["properties"]["sha256"]["default"]}
    return config


@pytest.fixture(scope="module")
def real_study(tmp_path_factory, synthetic_source):
    """One quick-sized study on the real data, run once for both tests: Adam trains, and the brief's own
    "loss becomes NaN" case, SGD at lr 1000, diverges in its first epoch in every run (empty history)."""
    study = make_study(tmp_path_factory.mktemp("real") / "study", synthetic_source)
    config = real_data_config(study)
    config["grid"] = {"inits": ["he", "xavier"], "optimizers": ["sgd", "adam"], "seeds": [1]}
    config["optimizers"]["sgd"]["kwargs"]["lr"] = 1.0e3
    config["training"] = {"epochs": 1, "batch_size": 64, "train_size": 6000}
    config["validation"] = {"source": "holdout", "size": 2000, "split_seed": 0}
    study.write_config(base=config, overrides=config)
    study.snakemake("--cores", "2")
    return study


def test_quick_sized_study_on_real_data(real_study):
    metrics = real_study.metrics("he_adam_seed1")
    assert metrics["data"] == {"validation_source": "holdout", "train": 6000, "validation": 2000, "test": 10000}
    # one epoch on a tenth of the data already separates FashionMNIST's classes well above chance (0.1)
    assert metrics["test"]["accuracy"] > 0.7


def test_an_optimizer_that_diverges_in_epoch_1_still_gets_a_report(real_study):
    # SGD at lr 1000 diverged in epoch 1 in every run: the report must still be written and say so
    study = real_study
    diverged = [f"{init}_sgd_seed1" for init in ("he", "xavier")]
    for run_id in diverged:
        metrics = study.metrics(run_id)
        assert metrics["status"] == "diverged" and metrics["divergence"]["epoch"] == 1
        assert metrics["history"]["val_accuracy"] == []
    for run_id in ("he_adam_seed1", "xavier_adam_seed1"):
        assert study.metrics(run_id)["status"] == "completed"
    results = study.results
    findings = (results / "findings.md").read_text()
    for run_id in diverged:
        assert any(run_id in line and "diverged" in line for line in findings.splitlines()), run_id
    diagnostics = (results / "diagnostics.md").read_text()
    assert "2 of 4 runs never finished epoch 1 (2 diverged): he_sgd_seed1, xavier_sgd_seed1" in diagnostics
    assert "sends the weaker signal" in diagnostics
    assert "## Why: signal propagation" in findings  # the section made it into the report
    for figure in ("signal_at_init", "signal_grad_norms"):
        assert (results / "figures" / f"{figure}.png").read_bytes()[:4] == b"\x89PNG"
