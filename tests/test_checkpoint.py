"""A checkpoint is resumed only if it was computed as the run would compute it now: same spec (data
included), same training code, same PyTorch, same precision. Anything else starts the run afresh, saying why."""

from __future__ import annotations

import logging
import re

import pytest
import torch
from conftest import spec, synthetic_splits, without_timings

from fmnist_initopt import checkpoint
from fmnist_initopt.study import training_code_sha256
from fmnist_initopt.training import train_run

CPU = torch.device("cpu")


def epochs_trained(caplog) -> int:
    return len(re.findall(r"epoch \d+/\d+", caplog.text))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 2-epoch run's checkpoint and metrics."""
    path = tmp_path_factory.mktemp("checkpoint") / "run.pt"
    return path, train_run(spec(epochs=2), synthetic_splits(), CPU, path)


def rebound(path, tmp_path, **changes):
    """A copy of the checkpoint at `path` whose binding says it was computed otherwise."""
    saved = torch.load(path, weights_only=True)
    saved["binding"] = {**saved["binding"], **changes}
    copy = tmp_path / "rebound.pt"
    torch.save(saved, copy)
    return copy


def test_a_matching_checkpoint_is_resumed_and_the_metrics_record_what_bound_it(finished, tmp_path, caplog):
    path, metrics = finished
    caplog.set_level(logging.INFO)
    again = train_run(spec(epochs=2), synthetic_splits(), CPU, rebound(path, tmp_path))
    assert "resuming after epoch 2" in caplog.text and epochs_trained(caplog) == 0
    assert without_timings(again) == without_timings(metrics)
    assert metrics["identity"] == {
        "training_code_sha256": training_code_sha256(),
        "torch": torch.__version__,
        "precision": "fp32",
    }
    assert metrics["history"]["precision"] == ["fp32", "fp32"] and metrics["history"]["device"] == ["cpu", "cpu"]


@pytest.mark.parametrize(
    ("part", "value", "said"),
    [
        ("training_code_sha256", "0" * 64, "other training code"),
        ("torch", "2.2.0", "other PyTorch version"),
        ("precision", "bf16", "other precision"),
        ("spec_sha256", spec(seed=2).fingerprint(), "other run settings or data"),
    ],
)
def test_a_checkpoint_computed_otherwise_is_refused_and_the_run_starts_afresh(
    finished, tmp_path, caplog, part, value, said
):
    path, metrics = finished
    caplog.set_level(logging.INFO)
    again = train_run(spec(epochs=2), synthetic_splits(), CPU, rebound(path, tmp_path, **{part: value}))
    assert "starting afresh" in caplog.text and said in caplog.text and value in caplog.text
    assert "resuming" not in caplog.text and epochs_trained(caplog) == 2
    # trained from epoch 1 by this code: the same result as the first, uninterrupted run
    assert without_timings(again) == without_timings(metrics)


def test_a_checkpoint_from_before_bindings_existed_is_refused(finished, tmp_path, caplog):
    path, _ = finished
    saved = torch.load(path, weights_only=True)
    saved["fingerprint"] = spec(epochs=2).fingerprint()  # how checkpoints were bound before issue 19
    del saved["binding"]
    old = tmp_path / "old.pt"
    torch.save(saved, old)
    assert checkpoint.load(old, checkpoint.binding(spec(epochs=2), "fp32"), CPU) is None
    assert "starting afresh" in caplog.text and "not recorded" in caplog.text


def test_the_data_is_part_of_the_spec_and_of_the_binding():
    other_data = spec(data={"train-images-idx3-ubyte": "1" * 64})
    assert other_data.fingerprint() != spec().fingerprint()
    assert checkpoint.binding(other_data, "fp32") != checkpoint.binding(spec(), "fp32")
    assert other_data.as_dict()["data"] == {"train-images-idx3-ubyte": "1" * 64}
