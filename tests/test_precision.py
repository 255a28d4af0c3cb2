"""training.precision: bf16 autocast trains and is recorded; without native bfloat16 it falls back to
fp32 with a warning; the precision is part of a run's identity."""

import logging
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from conftest import spec, synthetic_splits
from test_open_grid import full_config

from fmnist_initopt import environment, training
from fmnist_initopt.data import normalise
from fmnist_initopt.study import canonical_json, run_spec

CPU = torch.device("cpu")


def history_without_timings(metrics):
    return {key: values for key, values in metrics["history"].items() if key != "epoch_seconds"}


@pytest.fixture
def bf16_native(monkeypatch):
    """Whatever this machine's CPU has: bfloat16 autocast also runs (emulated) where it is not native."""
    monkeypatch.setattr(environment, "native_bf16", lambda device: True)


def test_a_bf16_run_completes_learns_and_records_its_precision(bf16_native):
    bf16 = training.train_run(spec(epochs=3, precision="bf16"), synthetic_splits(), CPU)
    assert bf16["status"] == "completed"
    assert bf16["precision"] == "bf16" and bf16["spec"]["precision"] == "bf16"
    losses = bf16["history"]["train_loss"]
    assert losses[-1] < losses[0] / 2, losses
    assert bf16["test"]["accuracy"] > 0.5  # ten classes: chance is 0.1
    # autocast really took effect: the same run in fp32 computes other numbers
    fp32 = training.train_run(spec(epochs=3), synthetic_splits(), CPU)
    assert fp32["precision"] == "fp32"
    assert history_without_timings(bf16) != history_without_timings(fp32)


def test_bf16_keeps_parameters_gradients_optimizer_state_and_loss_in_fp32(bf16_native):
    model, optimizer = training.model_and_optimizer(spec(precision="bf16"), CPU)
    images, labels = normalise(synthetic_splits().train_x[:32]), synthetic_splits().train_y[:32]
    loss = training.optimizer_step(model, optimizer, images, labels, "bf16")
    assert loss.dtype == torch.float32
    with training.autocast(CPU, "bf16"):
        assert model(images).dtype == torch.bfloat16  # the forward pass did run in bfloat16
    for parameter in model.parameters():
        assert parameter.dtype == parameter.grad.dtype == torch.float32
        assert all(state.dtype == torch.float32 for state in optimizer.state[parameter].values() if state.dim())


def test_without_native_bf16_a_bf16_run_trains_in_fp32_and_says_so(monkeypatch, caplog):
    monkeypatch.setattr(environment, "native_bf16", lambda device: False)
    with caplog.at_level(logging.WARNING):
        fallback = training.train_run(spec(precision="bf16"), synthetic_splits(), CPU)
    assert "training.precision is bf16" in caplog.text and "training in fp32 instead" in caplog.text
    assert fallback["precision"] == "fp32" and fallback["spec"]["precision"] == "bf16"
    fp32 = training.train_run(spec(), synthetic_splits(), CPU)
    assert history_without_timings(fallback) == history_without_timings(fp32)
    assert fallback["test"] == fp32["test"]


@pytest.mark.parametrize(
    ("flags", "native"),
    [({"avx2", "avx512f", "avx512_bf16"}, True), ({"amx_bf16"}, True), ({"bf16", "asimd"}, True), ({"avx2"}, False)],
)
def test_native_bf16_on_the_cpu_is_read_from_its_flags(monkeypatch, flags, native):
    monkeypatch.setattr(environment, "cpu_flags", lambda: flags)
    assert environment.native_bf16(CPU) is native


def test_autocast_runs_on_the_runs_device_and_only_for_bf16():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "CUDA is not available": only the settings are checked here
        on_gpu = training.autocast(torch.device("cuda"), "bf16")
    assert (on_gpu.device, on_gpu.fast_dtype) == ("cuda", torch.bfloat16)
    assert training.autocast(CPU, "bf16")._enabled
    assert not training.autocast(CPU, "fp32")._enabled


def test_precision_is_part_of_a_runs_identity():
    config = full_config()
    assert config["training"]["precision"] == "fp32"  # the repository's default
    fp32 = run_spec(config, "he", "adam", 1)
    config["training"]["precision"] = "bf16"
    bf16 = run_spec(config, "he", "adam", 1)
    assert bf16.precision == "bf16"
    assert canonical_json(fp32.as_dict()) != canonical_json(bf16.as_dict())
    assert fp32.fingerprint() != bf16.fingerprint()  # a checkpoint of one is never resumed as the other


# A process that frees a 20 MB block (the size of a batch's activations) and reports how much of it
# the process still holds afterwards: kept for the next batch, or handed back to the kernel.
FREE_A_BLOCK = """
import sys
from fmnist_initopt.environment import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else None
def resident():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096
before = resident()
block = bytearray(20 * 2**20)  # zero-filled, so every page is touched
del block
print(applied, (resident() - before) / 2**20)
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads resident memory from Linux /proc")
def test_freed_activation_sized_blocks_stay_in_the_process_for_the_next_batch():
    def held_after_free(mode: str) -> tuple[str, float]:
        out = subprocess.run([sys.executable, "-c", FREE_A_BLOCK, mode], capture_output=True, text=True, check=True)
        applied, held_mb = out.stdout.split()
        return applied, float(held_mb)

    assert held_after_free("default")[1] < 5, "without the setting, glibc hands a freed 20 MB block back at once"
    applied, held_mb = held_after_free("keep")
    assert applied == "True" and held_mb > 15, (applied, held_mb)
