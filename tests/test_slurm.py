"""`snakemake --profile slurm` on a real single-node SLURM cluster (tests/slurm/start-slurm.sh).

The cluster advertises fake GPUs (a GRES backed by /dev/null clones), so a `gpu: 1` request is
scheduled as on a GPU cluster while the job itself finds no CUDA device and, under `device: auto`,
trains on the CPU: the results must then equal a local run's.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest
import torch
import yaml
from conftest import REPO, make_study, without_timings

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
# Both inits, one optimizer: a job per fake GPU, so the cluster runs them side by side. What
# SLURM changes (submission, resources, polling) is the same for every run of the grid.
STUDY = {"grid": {"inits": ["he", "xavier"], "optimizers": ["adam"], "seeds": [1]}, "device": "auto"}


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


def accounted_jobs(workdir) -> list[dict[str, str]]:
    """Every job the cluster's accounting saw start in `workdir`."""
    fields = ["JobIDRaw", "Comment", "WorkDir", "AllocTRES", "State", "ExitCode"]
    listing = subprocess.run(
        ["sacct", "-X", "-P", "-n", "-a", "-S", "now-1days", "-o", ",".join(fields)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    jobs = [dict(zip(fields, line.split("|"))) for line in listing.splitlines() if line]
    return [job for job in jobs if job["WorkDir"] == str(workdir)]


def comparable(metrics: dict) -> dict:
    """A run's result: everything but timings and where it ran."""
    return {k: v for k, v in without_timings(metrics).items() if k != "environment"}


def test_profile_runs_the_study_on_slurm_with_one_gpu_per_train_job(slurm_cluster, tmp_path, synthetic_source):
    study = make_study(tmp_path / "on-slurm", synthetic_source, STUDY)
    set_site(study.root / "slurm" / "config.yaml", account=first_account(), partition="main")

    started = time.monotonic()
    result = study.snakemake("--profile", "slurm", *FAST_POLLING, *ONE_THREAD, timeout=SNAKEMAKE_TIMEOUT)
    print(f"snakemake --profile slurm: {time.monotonic() - started:.0f} s")

    run_ids = sorted(path.parent.name for path in (study.root / "results" / "runs").glob("*/metrics.json"))
    assert run_ids == ["he_adam_seed1", "xavier_adam_seed1"], result.stderr
    jobs = {job["JobIDRaw"]: job for job in accounted_jobs(study.root)}
    # one sbatch job per run, each a train job with a GPU, and nothing else went to the cluster
    assert len(jobs) == len(run_ids), jobs
    for run_id in run_ids:
        metrics = study.metrics(run_id)
        environment, run = metrics["environment"], metrics["run"]
        job = jobs[environment["slurm_job_id"]]
        assert job["Comment"] == f"rule_train_wildcards_{run['init']}_{run['optimizer']}_{run['seed']}", job
        assert "gres/gpu=1" in job["AllocTRES"].split(","), job
        assert (job["State"], job["ExitCode"]) == ("COMPLETED", "0:0"), job
        # the fake GPU sets CUDA_VISIBLE_DEVICES but has no CUDA behind it: auto falls back
        assert environment["device"] == ("cuda" if torch.cuda.is_available() else "cpu")

    local = make_study(tmp_path / "local", synthetic_source, STUDY)
    local.snakemake("--cores", "2", *ONE_THREAD)
    for run_id in run_ids:
        assert local.metrics(run_id)["environment"]["slurm_job_id"] is None
        assert comparable(study.metrics(run_id)) == comparable(local.metrics(run_id)), run_id
