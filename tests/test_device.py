"""The training device: `auto` takes a GPU when PyTorch sees one and records what it used;
`cuda` without a GPU stops the run with a message that says what to change."""

from __future__ import annotations

import pytest
import torch

from fmnist_initopt.environment import DeviceError, environment, resolve_device

ONE_RUN = {"grid": {"inits": ["he"], "optimizers": ["sgd"], "seeds": [1]}}


@pytest.mark.parametrize("visible", [True, False], ids=["a GPU is visible", "no GPU"])
def test_auto_takes_the_gpu_exactly_when_pytorch_sees_one(monkeypatch, visible):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: visible)
    assert resolve_device("auto").type == ("cuda" if visible else "cpu")
    assert resolve_device("cpu").type == "cpu"


def test_cuda_without_a_gpu_names_the_problem_and_the_fix(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match=r"device is 'cuda' but PyTorch sees no CUDA GPU.*Fix: .*device: auto"):
        resolve_device("cuda")


def test_the_environment_names_the_cpu_it_ran_on():
    recorded = environment(torch.device("cpu"), 1, ".")
    assert recorded["device"] == "cpu" and recorded["threads"] == 1
    assert recorded["device_name"] and recorded["device_name"] != "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible, so device: cuda is valid here")
def test_cuda_run_without_a_gpu_fails_and_writes_no_metrics(study):
    study.write_config({**ONE_RUN, "device": "cuda"})
    run = study.snakemake("--cores", "1", check=False)
    assert run.returncode != 0
    log = (study.results / "runs" / "he_sgd_seed1" / "train.log").read_text()
    assert "device is 'cuda' but PyTorch sees no CUDA GPU" in log
    assert not (study.results / "runs" / "he_sgd_seed1" / "metrics.json").exists()
