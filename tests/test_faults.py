"""Faults lose nothing: interrupted writes, a killed study, a second workflow on the same directory.
Plus the guarantees that hold by construction: no path outside the study's results, safe loading, no URL but http(s).\n(No eval/exec: ruff's S307/S102 rules, run by the test command, check the code.)"""

from __future__ import annotations

import base64
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from conftest import REPO, SNAKEMAKE, spec

from fmnist_initopt import atomic, checkpoint
from fmnist_initopt.data import FILE_NAMES, DataError, fetch_raw_files

WORKFLOW_CODE = [REPO / "Snakefile", *sorted((REPO / "workflow").rglob("*.py")), *sorted((REPO / "src").rglob("*.py"))]
OLD = {"status": "completed", "history": {"epoch": [1, 2]}}
NEW = {"status": "completed", "history": {"epoch": [1, 2, 3]}, "padding": "x" * 100_000}


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("existing", [True, False], ids=["over an old file", "new file"])
def test_a_write_that_fails_midway_leaves_the_old_file_or_none(tmp_path, monkeypatch, existing):
    target = tmp_path / "metrics.json"
    if existing:
        atomic.atomic_write_json(target, OLD)
    real_write_text = Path.write_text

    def write_half_then_fail(self, text, *args, **kwargs):
        real_write_text(self, text[: len(text) // 2], *args, **kwargs)
        raise OSError("disk full (injected)")

    monkeypatch.setattr(Path, "write_text", write_half_then_fail)
    with pytest.raises(OSError, match="injected"):
        atomic.atomic_write_json(target, NEW)
    if existing:
        assert json.loads(target.read_text()) == OLD
    assert files_in(tmp_path) == (["metrics.json"] if existing else [])


def test_a_rename_that_fails_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    atomic.atomic_write_json(target, OLD)

    def refuse(*args):
        raise OSError("rename failed (injected)")

    monkeypatch.setattr(atomic.os, "replace", refuse)
    with pytest.raises(OSError, match="injected"):
        atomic.atomic_write_json(target, NEW)
    assert json.loads(target.read_text()) == OLD and files_in(tmp_path) == ["metrics.json"]


def test_a_process_killed_in_the_middle_of_a_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "metrics.json"
    atomic.atomic_write_json(target, OLD)
    writer = f"""
import os, sys, time
from fmnist_initopt.atomic import atomic_path
with atomic_path({str(target)!r}) as tmp:
    with open(tmp, "w") as handle:
        handle.write('{{"status": "compl')
        handle.flush()
        print("half written", flush=True)
        time.sleep(60)
"""
    child = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "half written"
    child.kill()
    child.wait()
    assert json.loads(target.read_text()) == OLD
    # SIGKILL skips all clean-up: what remains is a hidden temp file that no metrics.json pattern matches.
    assert [name for name in files_in(tmp_path) if name != "metrics.json"] == [
        name for name in files_in(tmp_path) if name.startswith(".metrics.json.") and name.endswith(".partial")
    ]


def test_no_script_writes_a_snakemake_output_directly():
    direct = re.compile(r"\b(open|savefig|to_csv|to_json|write_text|write_bytes|save)\(\s*snakemake\.output")
    offenders = [
        f"{path}: {line.strip()}"
        for path in WORKFLOW_CODE
        for line in path.read_text().splitlines()
        if direct.search(line)
    ]
    assert offenders == [], "write outputs through atomic.atomic_path/atomic_write_*"


def marked_incomplete(study) -> set[str]:
    """Outputs Snakemake has marked as being written (its .snakemake/incomplete/<base64 path> files)."""
    folder = study.root / ".snakemake" / "incomplete"
    names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
    return {base64.urlsafe_b64decode(name).decode() for name in names}


def start_study(study) -> subprocess.Popen:
    """snakemake in its own process group, so the whole tree (jobs included) can be signalled at once."""
    log = open(study.root / "snakemake.out", "w")
    return subprocess.Popen(
        [SNAKEMAKE, "--cores", "2"],
        cwd=study.root,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def interrupt_then_kill(process: subprocess.Popen, grace: float = 1.0) -> None:
    """What an impatient user or a dying node does: Ctrl-C, then SIGKILL to everything left."""
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def wait_for(condition, process: subprocess.Popen, study, timeout: float = 400):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process.poll() is not None:
            pytest.fail(
                f"snakemake ended before the fault could be injected:\n{(study.root / 'snakemake.out').read_text()}"
            )
        time.sleep(0.1)
    interrupt_then_kill(process)
    pytest.fail("timed out waiting for the study to reach the point of the fault")


def restart(study) -> subprocess.CompletedProcess:
    """The README's restart: --rerun-incomplete; --unlock first if Snakemake says a dead run left its lock."""
    result = study.snakemake("--cores", "2", "--rerun-incomplete", check=False)
    if result.returncode != 0 and "cannot be locked" in result.stdout + result.stderr:
        assert "--unlock" in result.stdout + result.stderr
        study.snakemake("--unlock")
        result = study.snakemake("--cores", "2", "--rerun-incomplete", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_a_study_killed_mid_run_finishes_on_restart_keeping_every_finished_run(study):
    # three runs on two cores: the third is still training when one of the first two is done. Enough epochs
    # (~0.1 s each on a quiet machine) that the in-flight run cannot finish within the kill's grace period.
    epochs = 40
    study.write_config(
        {"grid": {"inits": ["he"], "optimizers": ["sgd", "adam", "rmsprop"]}, "training": {"epochs": epochs}}
    )
    runs, checkpoints = study.results / "runs", study.results / "checkpoints"

    def finished_and_in_flight():
        # finished = written AND recorded by Snakemake: a job killed between the two is, to Snakemake,
        # still running, and --rerun-incomplete rightly redoes it
        pending = marked_incomplete(study)
        finished = {
            p.parent.name
            for p in runs.glob("*/metrics.json")
            if f"results/main/runs/{p.parent.name}/metrics.json" not in pending
        }
        in_flight = {p.stem for p in checkpoints.glob("*.pt")} - finished
        return (finished, in_flight) if finished and in_flight else None

    process = start_study(study)
    finished, in_flight = wait_for(finished_and_in_flight, process, study)
    kept = {run: (runs / run / "metrics.json").stat().st_mtime_ns for run in finished}
    contents = {run: (runs / run / "metrics.json").read_bytes() for run in finished}
    interrupt_then_kill(process)

    restart(study)
    assert sorted(p.parent.name for p in runs.glob("*/metrics.json")) == [
        "he_adam_seed1",
        "he_rmsprop_seed1",
        "he_sgd_seed1",
    ]
    for run in finished:  # kept, not retrained
        assert (runs / run / "metrics.json").stat().st_mtime_ns == kept[run]
        assert (runs / run / "metrics.json").read_bytes() == contents[run]
    for run in in_flight:  # even the interrupted run kept its finished epochs
        assert "resuming after epoch" in (runs / run / "train.log").read_text()
        assert study.metrics(run)["status"] == "completed" and len(study.metrics(run)["history"]["epoch"]) == epochs
    assert not list(checkpoints.glob("*.pt"))
    assert not [p for p in (study.results).rglob("*.partial")]


def test_a_second_workflow_on_the_same_directory_is_refused_by_the_lock(study):
    study.write_config({"grid": {"inits": ["he"], "optimizers": ["adam"]}, "training": {"epochs": 500}})
    first = start_study(study)
    try:
        wait_for(lambda: list((study.results / "runs").glob("*/train.log")), first, study)
        # --rerun-incomplete, as the README advises after a crash: without it the jobs the first workflow
        # has in flight (marked incomplete) stop the second before it reaches the lock
        second = study.snakemake("--cores", "1", "--rerun-incomplete", check=False)
        output = second.stdout + second.stderr
        assert second.returncode != 0
        assert "Directory cannot be locked" in output and "--unlock" in output
        assert first.poll() is None  # the first workflow was not disturbed
    finally:
        interrupt_then_kill(first)


def test_a_checkpoint_holding_arbitrary_objects_is_refused_not_executed(tmp_path):
    # ruff's S301 keeps pickle.load out of the code; this checks the loader itself refuses code objects.
    path = tmp_path / "run.pt"
    bound_to = checkpoint.binding(spec(), "fp32")
    torch.save({"binding": bound_to, "payload": Exploit()}, path)
    with pytest.raises(pickle.UnpicklingError):
        checkpoint.load(path, bound_to, torch.device("cpu"))
    assert not (tmp_path / "exploited").exists()


class Exploit:
    def __reduce__(self):
        return (Path.touch, (Path(os.environ.get("TMPDIR", "/tmp")) / "exploited",))


@pytest.mark.parametrize(
    "source", ["file:///etc", "ftp://example.org/data", "github.com/zalandoresearch/fashion-mnist"]
)
def test_a_source_that_is_not_http_is_read_as_a_directory_and_never_opened_as_a_url(tmp_path, monkeypatch, source):
    def no_network(*args, **kwargs):
        raise AssertionError(f"urlopen called for {source}")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(DataError, match="no such directory"):
        fetch_raw_files(tmp_path, [source], {name: "0" * 64 for name in FILE_NAMES}, names=FILE_NAMES[:1])


@pytest.mark.parametrize(
    "target",
    [
        "results/main/runs/he_sgd_seed1/../../../../outside/metrics.json",
        "results/main/runs/lecun_sgd_seed1/metrics.json",
    ],
)
def test_targets_outside_the_grid_or_results_have_no_rule(study, target):
    result = study.snakemake("-n", "--cores", "1", target, check=False)
    assert result.returncode != 0
    assert (
        "MissingRuleException" in result.stdout + result.stderr or "No rule to produce" in result.stdout + result.stderr
    )
    assert not (study.root.parent / "outside").exists() and not (study.root / "outside").exists()
