"""`snakemake --profile slurm` on a real single-node SLURM cluster (tests/slurm/start-slurm.sh).

The cluster advertises fake GPUs (a GRES backed by /dev/null clones), so a `gpu: 1` request is
scheduled as on a GPU cluster while the job itself finds no CUDA device and, under `device: auto`,
trains on the CPU: the results must then equal a local run's.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import subprocess
import time
from collections import Counter

import pytest
import torch
import yaml
from conftest import REPO, SNAKEMAKE, make_study, without_timings
from synthetic import write_synthetic_source

from fmnist_initopt import progress

CLUSTER_SCRIPTS = REPO / "tests" / "slurm"
# start-slurm.sh's exit status when this machine cannot host the cluster (not root, no apt).
UNSUPPORTED = 3
FAKE_GPUS = 2
# One fake GPU per train job that runs at once, each with the profile's cpus_per_gpu.
CLUSTER_ENV = {"SLURM_FAKE_GPUS": str(FAKE_GPUS), "SLURM_CPUS": str(2 * FAKE_GPUS)}
# The profile waits 20 s before its first status query: right for a real queue, slow here.
FAST_POLLING = ("--slurm-init-seconds-before-status-checks", "2")
# PyTorch's two threads crawl when the test machine's two cores are busy with other work;
# the local reference run uses the same single thread, so its numbers can be compared.
ONE_THREAD = ("--set-threads", "train=1")
SNAKEMAKE_TIMEOUT = 300
# The profile's group of train jobs, and k for the tests (the profile's default is for the 48 runs).
TRAIN_GROUP = "train_group"
RUNS_PER_SUBMISSION = 2
GROUPING = ("--group-components", f"{TRAIN_GROUP}={RUNS_PER_SUBMISSION}")
# Four runs in groups of two: two submissions, one per fake GPU, so the cluster runs them side
# by side. What SLURM changes (submission, resources, polling) is the same for every run.
STUDY = {"grid": {"inits": ["he", "xavier"], "optimizers": ["adam", "sgd"], "seeds": [1]}, "device": "auto"}
# Two runs, one submission (GROUPING), trained one after the other; their epochs last long enough
# (see slow_synthetic_source) to requeue the group once the first is done and the second mid-run.
REQUEUE_STUDY = {
    "grid": {"inits": ["he"], "optimizers": ["adam", "sgd"], "seeds": [1]},
    "training": {"epochs": 3},
    "device": "auto",
}
# 6,100 training images (6,000 after the validation holdout): an epoch takes about 5 s on one
# thread of the test machine, so after the first epoch's checkpoint the job runs on for ~10 s.
SLOW_TRAIN_IMAGES = 6100


def cluster_script(name: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CLUSTER_SCRIPTS / name)],
        env={**os.environ, **CLUSTER_ENV},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running test cluster for the session; stopped afterwards whatever happened."""
    try:
        started = cluster_script("start-slurm.sh", timeout=600)
        if started.returncode == UNSUPPORTED:
            reason = f"no test SLURM cluster on this machine: {started.stdout.strip().splitlines()[-1]}"
            if os.environ.get("CI") == "true":
                pytest.fail(f"{reason} (CI=true: the SLURM test must run in CI)")
            pytest.skip(reason)
        assert started.returncode == 0, f"start-slurm.sh failed:\n{started.stdout}\n{started.stderr}"
        yield
    finally:
        stopped = cluster_script("stop-slurm.sh", timeout=180)
        print(stopped.stdout, stopped.stderr)


@pytest.fixture(scope="session")
def slow_synthetic_source(tmp_path_factory):
    directory = tmp_path_factory.mktemp("synthetic-fmnist-slow")
    return directory, write_synthetic_source(directory, n_train=SLOW_TRAIN_IMAGES)


def first_account() -> str:
    """What the README tells a user to look up for slurm_account."""
    accounts = subprocess.run(
        ["sacctmgr", "-n", "-P", "show", "assoc", f"user={os.environ.get('USER', 'root')}", "format=account"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert accounts, "the test cluster has no account for this user"
    return accounts[0]


def set_site(profile: os.PathLike, account: str, partition: str) -> None:
    """Fill in the profile's site settings, as the README asks a user to."""
    with open(profile) as handle:
        settings = yaml.safe_load(handle)
    settings["default-resources"].update(slurm_account=account, slurm_partition=partition)
    with open(profile, "w") as handle:
        yaml.safe_dump(settings, handle, sort_keys=False)


def slurm_study(root, source, overrides: dict):
    """A study whose profile names the test cluster's account and partition."""
    study = make_study(root, source, overrides)
    set_site(study.root / "slurm" / "config.yaml", account=first_account(), partition="main")
    return study


def accounted_jobs(workdir, *extra: str) -> list[dict[str, str]]:
    """Every job the cluster's accounting saw start in `workdir` (a requeued job's last start,
    or each of its starts with extra "-D")."""
    fields = ["JobIDRaw", "Comment", "WorkDir", "ReqTRES", "AllocTRES", "Timelimit", "State", "ExitCode"]
    listing = subprocess.run(
        ["sacct", "-X", "-P", "-n", "-a", "-S", "now-1days", *extra, "-o", ",".join(fields)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    jobs = [dict(zip(fields, line.split("|"))) for line in listing.splitlines() if line]
    return [job for job in jobs if job["WorkDir"] == str(workdir)]


def show_jobs(jobs: list[dict[str, str]]) -> None:
    """Print the accounting rows (pytest -s), as the closing note quotes them."""
    for job in jobs:
        print(" | ".join(f"{k}={v}" for k, v in job.items() if k != "WorkDir"))


def running_train_jobs(workdir) -> list[str]:
    """Running jobs of `workdir` that train runs (not the step-cost measurement)."""
    listing = subprocess.run(
        ["squeue", "-h", "-t", "RUNNING", "-o", "%i|%Z|%k"], capture_output=True, text=True, check=True
    ).stdout
    rows = (line.split("|") for line in listing.splitlines() if line)
    return [job_id for job_id, directory, comment in rows if directory == str(workdir) and "step_cost" not in comment]


def wait_for(condition, timeout: float, what: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            output = process.communicate()[0]
            raise AssertionError(f"snakemake ended (status {process.returncode}) before {what}:\n{output}")
        assert time.monotonic() < deadline, f"no {what} after {timeout:.0f} s"
        time.sleep(0.2)


def comparable(metrics: dict) -> dict:
    """A run's result: everything but timings and where it ran."""
    return {k: v for k, v in without_timings(metrics).items() if k != "environment"}


def grid_run_ids(overrides: dict) -> list[str]:
    grid = overrides["grid"]
    return sorted(f"{i}_{o}_seed{s}" for i in grid["inits"] for o in grid["optimizers"] for s in grid["seeds"])


@contextlib.contextmanager
def trained_locally(study, run_ids):
    """The reference: `run_ids` trained by a local snakemake (no SLURM, one thread, only the runs), in the
    background while the block waits on the cluster; on leaving the block, the local runs have succeeded."""
    targets = [f"results/main/runs/{run_id}/metrics.json" for run_id in run_ids]
    process = subprocess.Popen(
        [SNAKEMAKE, *targets, "--cores", "2", *ONE_THREAD],  # targets first: --set-threads takes every word after it
        cwd=study.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield study
        output = process.communicate(timeout=SNAKEMAKE_TIMEOUT)[0]
        assert process.returncode == 0, f"the local reference runs failed:\n{output}"
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_profile_trains_k_runs_per_submission_on_one_gpu(slurm_cluster, tmp_path, synthetic_source):
    study = slurm_study(tmp_path / "on-slurm", synthetic_source, STUDY)

    started = time.monotonic()
    # the local reference trains while snakemake mostly waits on the cluster's queue and status queries
    with trained_locally(make_study(tmp_path / "local", synthetic_source, STUDY), grid_run_ids(STUDY)) as local:
        result = study.snakemake("--profile", "slurm", *GROUPING, *FAST_POLLING, *ONE_THREAD, timeout=SNAKEMAKE_TIMEOUT)
        print(f"snakemake --profile slurm {' '.join(GROUPING)}: {time.monotonic() - started:.0f} s")

    run_ids = sorted(path.parent.name for path in (study.results / "runs").glob("*/metrics.json"))
    assert run_ids == ["he_adam_seed1", "he_sgd_seed1", "xavier_adam_seed1", "xavier_sgd_seed1"], result.stderr
    accounted = accounted_jobs(study.root)
    show_jobs(accounted)
    # the isolated step-cost measurement is one job of its own, on the training device
    cost_jobs = [job for job in accounted if "step_cost" in job["Comment"]]
    assert len(cost_jobs) == 1 and "gres/gpu=1" in cost_jobs[0]["AllocTRES"].split(","), accounted
    jobs = {job["JobIDRaw"]: job for job in accounted if job not in cost_jobs}
    # ceil(runs / k) submissions, each one group of train runs on one GPU, nothing else sent
    assert len(jobs) == math.ceil(len(run_ids) / RUNS_PER_SUBMISSION), jobs
    for job in jobs.values():
        assert TRAIN_GROUP in job["Comment"], job
        assert "gres/gpu=1" in job["ReqTRES"].split(","), job
        assert "gres/gpu=1" in job["AllocTRES"].split(","), job
        assert (job["State"], job["ExitCode"]) == ("COMPLETED", "0:0"), job
    runs_per_job = Counter(study.metrics(run_id)["environment"]["slurm_job_id"] for run_id in run_ids)
    assert set(runs_per_job) == set(jobs), runs_per_job
    assert sorted(runs_per_job.values()) == [RUNS_PER_SUBMISSION] * len(jobs), runs_per_job
    for run_id in run_ids:
        # the fake GPU sets CUDA_VISIBLE_DEVICES but has no CUDA behind it: auto falls back
        assert study.metrics(run_id)["environment"]["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
        # each epoch line says where the study stands: the plan written on the submitting host, read on the node
        log = (study.results / "runs" / run_id / "train.log").read_text()
        assert re.search(r"epoch \d+/\d+ .* \| study \w+: \d+/\d+ epochs", log), log
    # and the login node's view of it
    standing = progress.snapshot(progress.study_progress_dir(study.results), time.time())
    assert f"{len(run_ids)} of {len(run_ids)} runs finished" in standing, standing

    for run_id in run_ids:
        assert local.metrics(run_id)["environment"]["slurm_job_id"] is None
        assert comparable(study.metrics(run_id)) == comparable(local.metrics(run_id)), run_id


def test_requeued_group_re_evaluates_its_finished_run_and_resumes_the_other(
    slurm_cluster, tmp_path, slow_synthetic_source
):
    study = slurm_study(tmp_path / "on-slurm", slow_synthetic_source, REQUEUE_STUDY)
    runs, checkpoints = study.results / "runs", study.results / "checkpoints"
    run_ids = {"he_adam_seed1", "he_sgd_seed1"}

    def one_finished_one_in_flight():
        finished = {run for run in run_ids if (runs / run / "metrics.json").exists()}
        in_flight = {run for run in run_ids - finished if (checkpoints / f"{run}.pt").exists()}
        return (finished, in_flight) if len(finished) == 1 and len(in_flight) == 1 else None

    # the two runs only: the whole study under the profile is the test above's
    targets = [f"results/main/runs/{run}/metrics.json" for run in sorted(run_ids)]
    started = time.monotonic()
    process = subprocess.Popen(
        [SNAKEMAKE, *targets, "--profile", "slurm", *GROUPING, *FAST_POLLING, *ONE_THREAD],
        cwd=study.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        # the group's first run is done and its second has checkpointed an epoch: requeue the group now
        wait_for(one_finished_one_in_flight, SNAKEMAKE_TIMEOUT, "one finished run and one checkpoint", process)
        (finished,), (in_flight,) = one_finished_one_in_flight()
        (job_id,) = running_train_jobs(study.root)
        subprocess.run(["scontrol", "requeue", job_id], check=True)
        print(f"requeued job {job_id} after {time.monotonic() - started:.0f} s ({finished} done, {in_flight} not)")
        # the local reference trains while the requeued job waits out SLURM's requeue delay
        reference = make_study(tmp_path / "local", slow_synthetic_source, REQUEUE_STUDY)
        with trained_locally(reference, sorted(run_ids)) as local:
            output = process.communicate(timeout=SNAKEMAKE_TIMEOUT)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    print(f"snakemake --profile slurm with a requeue: {time.monotonic() - started:.0f} s")
    assert process.returncode == 0, output

    epochs = REQUEUE_STUDY["training"]["epochs"]
    # the restarted group re-evaluated the run it had finished (its last checkpoint) instead of retraining it
    log = (runs / finished / "train.log").read_text()
    assert f"{finished}: resuming after epoch {epochs}" in log and not re.search(r"epoch \d+/\d+", log), log
    # and went on with the other from the checkpoint of a finished epoch, not from scratch
    log = (runs / in_flight / "train.log").read_text()
    resumed = re.search(rf"{in_flight}: resuming after epoch (\d+)", log)
    assert resumed, log
    assert 1 <= int(resumed.group(1)) < epochs, log
    # the finished runs' checkpoints are gone once Snakemake has succeeded
    assert not list(checkpoints.glob("*.pt"))
    starts = accounted_jobs(study.root, "-D")
    show_jobs(starts)
    finished_in = {study.metrics(run)["environment"]["slurm_job_id"] for run in run_ids}
    if finished_in == {job_id}:
        # SLURM put the job back in the queue and restarted it under its id; the plugin kept
        # waiting for it (REQUEUED and PENDING are not failures to it)
        assert [job["State"] for job in starts if job["JobIDRaw"] == job_id] == ["REQUEUED", "COMPLETED"], starts
    else:
        # the plugin took the requeue for a failure and Snakemake resubmitted the group (retries)
        (resubmitted,) = finished_in
        assert int(resubmitted) > int(job_id), (finished_in, job_id)

    for run in run_ids:
        assert comparable(study.metrics(run)) == comparable(local.metrics(run)), run
