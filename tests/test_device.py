"""The training device: `auto` takes a GPU when PyTorch sees one and records what it used;
`cuda` without a GPU stops the run with a message that says what to change."""

from __future__ import annotations

import pytest
import torch

from runtime_env import DeviceError, environment, resolve_device

ONE_RUN = {"grid": {"inits": ["he"], "optimizers": ["sgd"], "seeds": [1]}}
GPU_VISIBLE = torch.cuda.is_available()
EXPECTED = "cuda" if GPU_VISIBLE else "cpu"


def test_auto_takes_the_gpu_only_when_one_is_visible():
    assert resolve_device("auto").type == EXPECTED
    assert resolve_device("cpu").type == "cpu"


@pytest.mark.skipif(GPU_VISIBLE, reason="a GPU is visible, so device: cuda is valid here")
def test_cuda_without_a_gpu_names_the_problem_and_the_fix():
    with pytest.raises(DeviceError, match=r"device is 'cuda' but PyTorch sees no CUDA GPU.*Fix: .*device: auto"):
        resolve_device("cuda")


def test_auto_run_records_the_device_it_trained_on(study, monkeypatch):
    # what a SLURM job with a GPU request sees, whether or not a real GPU is behind it
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    study.write_config({**ONE_RUN, "device": "auto"})
    study.snakemake("--cores", "1")
    recorded = study.metrics("he_sgd_seed1")["environment"]
    assert recorded["device"] == EXPECTED
    assert recorded["device_name"] == environment(torch.device(EXPECTED), 1, ".")["device_name"]
    assert recorded["device_name"]


@pytest.mark.skipif(GPU_VISIBLE, reason="a GPU is visible, so device: cuda is valid here")
def test_cuda_run_without_a_gpu_fails_and_writes_no_metrics(study):
    study.write_config({**ONE_RUN, "device": "cuda"})
    run = study.snakemake("--cores", "1", check=False)
    assert run.returncode != 0
    log = (study.root / "results" / "runs" / "he_sgd_seed1" / "train.log").read_text()
    assert "device is 'cuda' but PyTorch sees no CUDA GPU" in log
    assert not (study.root / "results" / "runs" / "he_sgd_seed1" / "metrics.json").exists()
