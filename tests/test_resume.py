"""A training job killed with SIGKILL (time limit, preemption) resumes from its last epoch checkpoint
and ends with the metrics of an uninterrupted run."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import SNAKEMAKE, copy_study, make_study, without_timings

RUN_ID = "he_adam_seed1"  # Adam: the resumed run needs the optimizer's moment estimates back
TARGET = f"results/main/runs/{RUN_ID}/metrics.json"
CHECKPOINT = f"results/main/checkpoints/{RUN_ID}.pt"
# Enough epochs that the run is still training when the kill lands (it is polled every 10 ms).
EPOCHS = 6
# PyTorch's two threads crawl when the test machine's two cores are busy with other work.
ONE_THREAD = ("--cores", "1")
OVERRIDES = {
    "grid": {"inits": ["he"], "optimizers": ["adam"], "seeds": [1]},
    "training": {"epochs": EPOCHS},
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory, synthetic_source):
    """The run trained uninterrupted to its end, as inside a SLURM group job (--no-hooks): its last
    checkpoint stays. Shared by the tests: change a copy (copy_study), never this one."""
    study = make_study(tmp_path_factory.mktemp("uninterrupted") / "study", synthetic_source, OVERRIDES)
    study.snakemake(*ONE_THREAD, "--no-hooks", TARGET)
    return study


def processes_in(directory: Path) -> list[int]:
    """Processes whose working directory is `directory`: what is left of a killed run."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and Path(os.readlink(proc / "cwd")) == directory:
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def kill_after_first_checkpoint(study) -> int:
    """Start the run, SIGKILL its whole process group once an epoch is checkpointed; return that epoch."""
    checkpoint = study.root / CHECKPOINT
    run = subprocess.Popen(
        [SNAKEMAKE, *ONE_THREAD, TARGET],
        cwd=study.root,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not checkpoint.exists():
            assert run.poll() is None, "the run ended before writing a checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.01)
    finally:
        with contextlib.suppress(ProcessLookupError):  # the group is gone if the run already ended
            os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    for _ in range(100):  # the group's processes are gone once the kernel reaps them
        if not processes_in(study.root.resolve()):
            break
        time.sleep(0.05)
    assert not processes_in(study.root.resolve()), "a process of the killed run survived"
    assert not (study.root / TARGET).exists(), "the kill came after the run finished: raise EPOCHS"
    epochs_done = len(torch.load(checkpoint, weights_only=True)["history"]["epoch"])
    assert 1 <= epochs_done < EPOCHS
    return epochs_done


def test_killed_run_resumes_from_its_checkpoint_and_matches_an_uninterrupted_run(tmp_path, synthetic_source, finished):
    killed = make_study(tmp_path / "killed", synthetic_source, OVERRIDES)
    epochs_done = kill_after_first_checkpoint(killed)

    # a killed snakemake leaves its lock behind; --unlock is the documented way out
    killed.snakemake("--unlock")
    killed.snakemake(*ONE_THREAD, TARGET)
    log = (killed.results / "runs" / RUN_ID / "train.log").read_text()
    assert f"resuming after epoch {epochs_done}" in log
    # only the epochs after the checkpoint were trained again
    assert len(re.findall(r"epoch \d+/\d+", log)) == EPOCHS - epochs_done, log
    assert not (killed.root / CHECKPOINT).exists(), "the checkpoint outlived metrics.json"

    resumed, reference = killed.metrics(RUN_ID), finished.metrics(RUN_ID)
    assert resumed["history"]["epoch"] == list(range(1, EPOCHS + 1))
    assert without_timings(resumed) | {"environment": None} == without_timings(reference) | {"environment": None}


def epochs_trained(study) -> int:
    return len(re.findall(r"epoch \d+/\d+", (study.results / "runs" / RUN_ID / "train.log").read_text()))


def test_a_requeued_job_re_evaluates_a_finished_run_and_a_forced_rerun_retrains_it(tmp_path, finished):
    study = copy_study(finished, tmp_path / "study")
    # a SLURM group job runs Snakemake with --no-hooks: the finished run's checkpoint stays
    assert (study.root / CHECKPOINT).exists(), "a finished run lost its checkpoint inside a group job"
    first = study.metrics(RUN_ID)

    # a requeued or retried group reruns every job it holds (--force): the finished one is only re-evaluated
    study.snakemake(*ONE_THREAD, "--no-hooks", "--force", TARGET)
    log = (study.results / "runs" / RUN_ID / "train.log").read_text()
    assert f"resuming after epoch {EPOCHS}" in log and epochs_trained(study) == 0, log
    assert without_timings(study.metrics(RUN_ID)) | {"environment": None} == without_timings(first) | {
        "environment": None
    }

    # the user's forced rerun starts from scratch: the hooks remove a finished run's checkpoint first
    study.snakemake(*ONE_THREAD, "--forcerun", TARGET)
    assert epochs_trained(study) == EPOCHS
    assert "resuming" not in (study.results / "runs" / RUN_ID / "train.log").read_text()
    assert not (study.root / CHECKPOINT).exists(), "a finished run's checkpoint outlived a successful Snakemake"


def test_a_forced_rerun_of_an_interrupted_run_retrains_from_epoch_1(tmp_path, finished):
    study = copy_study(finished, tmp_path / "study")
    # an interrupted run: its checkpoint (here of every epoch, --no-hooks) is there, its metrics.json is not
    (study.root / TARGET).unlink()
    assert (study.root / CHECKPOINT).exists()
    study.snakemake(*ONE_THREAD, "--forcerun", TARGET)
    log = (study.results / "runs" / RUN_ID / "train.log").read_text()
    assert "resuming" not in log and epochs_trained(study) == EPOCHS, log
