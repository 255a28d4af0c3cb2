"""Where a study stands while it trains: one log line per epoch of each run, with the study's remaining time.

A study's progress directory (`results/<study>/progress/`) holds `plan.json`, written when Snakemake starts
(the runs this invocation trains, with their epochs), and one record per run, rewritten atomically by the
run's job after every epoch (a Snakemake log of the train rule: it never decides a rerun). The estimate reads
only these files, so it is the same for local jobs and for SLURM jobs on a shared file system:

- each planned run's work left is its epochs still to train times its own mean epoch time (the median
  over the runs measured so far, for a run not started yet), less the time already spent on the epoch in
  flight;
- the slots are the most jobs seen alive at once (each job from its process's start to its last write),
  and the efficiency is the share of the jobs' alive time spent in epochs (imports, data and the final
  evaluations are the rest);
- the time left is when that work ends on those slots, the runs in flight first and then the others in
  order, each on the first free slot, divided by the efficiency.

So the estimate follows what the scheduler really overlaps (2 jobs on 2 cores, 40 on a cluster), each job's
fixed costs in proportion, and a last wave with fewer runs than slots; it is rough for the first epochs,
and counts training only (not Snakemake's gaps between jobs, nor the report's few seconds at the end).

The lines are plain text, one per epoch per run, written through `logging`: no terminal control, so a
SLURM log or a run's train.log reads as the terminal does. `python -m fmnist_initopt.progress results/<study>`
prints the same estimate and each unfinished run's last epoch, for a study whose jobs run elsewhere.
"""

from __future__ import annotations

import argparse
import heapq
import json
import logging
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from tabulate import tabulate

from fmnist_initopt.atomic import atomic_write_json

log = logging.getLogger(__name__)

PLAN_FILE = "plan.json"
# A training job that has written nothing for this many of its epochs is taken as killed: one epoch of
# jitter is normal (a slower run, a busy node), two are not.
SILENT_EPOCHS_BEFORE_GONE = 2


def study_progress_dir(study_dir: str | Path) -> Path:
    """Where a study's plan and run records live (the workflow declares it once from this)."""
    return Path(study_dir) / "progress"


@dataclass(frozen=True)
class Plan:
    """What one Snakemake invocation trains: run name (its record's file stem) -> epochs."""

    study: str
    started_at: float
    runs: dict[str, int]


@dataclass
class RunRecord:
    """One run's progress as its job last wrote it. `finished_at` holds the wall-clock time of each epoch
    this job trained, None for the epochs it resumed from a checkpoint."""

    run_id: str
    epochs: int
    status: str = "training"  # "training", then "finished" or "diverged"
    epoch_seconds: list[float] = field(default_factory=list)
    finished_at: list[float | None] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    started_at: float = 0.0
    setup_seconds: float = 0.0  # the job's time before started(): imports, data, model
    updated_at: float = 0.0

    @property
    def epochs_done(self) -> int:
        return len(self.epoch_seconds)


@dataclass(frozen=True)
class StudyEstimate:
    epochs_done: int
    epochs_total: int
    runs_finished: int
    runs_total: int
    # None until a planned run has finished an epoch here (nothing measured yet)
    seconds_left: float | None = None
    slots: int | None = None  # the most jobs seen training at once
    efficiency: float | None = None  # the share of the jobs' time spent in their epochs


@dataclass(frozen=True)
class Job:
    """One run's job as its record shows it: alive from `began` to `ended`, `worked` seconds of epochs
    done here (the epoch in flight included), `left` seconds of epochs still to train."""

    began: float
    ended: float
    worked: float
    left: float


def write_plan(progress_dir: Path, study: str, runs: Mapping[str, int], now: float) -> Plan:
    """Record what this invocation trains; the records of those runs go (a forced run starts from epoch 1,
    and an old record would count epochs it no longer has)."""
    plan = Plan(study, now, dict(runs))
    for name in plan.runs:
        record_path(progress_dir, name).unlink(missing_ok=True)
    atomic_write_json(progress_dir / PLAN_FILE, asdict(plan))
    return plan


def read_plan(progress_dir: Path) -> Plan | None:
    try:
        return Plan(**json.loads((progress_dir / PLAN_FILE).read_text()))
    except FileNotFoundError:
        return None


def record_path(progress_dir: Path, name: str) -> Path:
    return progress_dir / f"{name}.json"


def read_records(progress_dir: Path, names: Iterable[str] | None = None) -> dict[str, RunRecord]:
    """The records present, by run name (all of them, or those of `names`)."""
    paths = progress_dir.glob("*.json") if names is None else (record_path(progress_dir, n) for n in names)
    records = {}
    for path in paths:
        if path.name == PLAN_FILE:
            continue
        try:
            records[path.stem] = RunRecord(**json.loads(path.read_text()))
        except FileNotFoundError:  # its run was just re-planned
            continue
    return records


def estimate(plan: Plan, records: Mapping[str, RunRecord], now: float) -> StudyEstimate:
    """The planned runs' epochs done and the training time left (see the module's docstring)."""
    planned = {name: records.get(name) for name in plan.runs}
    started = {name: record for name, record in planned.items() if record is not None}
    done = {name: min(record.epochs_done, plan.runs[name]) for name, record in started.items()}
    counts = StudyEstimate(
        epochs_done=sum(done.values()),
        epochs_total=sum(plan.runs.values()),
        runs_finished=sum(1 for record in started.values() if record.status != "training"),
        runs_total=len(plan.runs),
    )
    measured = [statistics.fmean(record.epoch_seconds) for record in started.values() if record.epoch_seconds]
    if not measured:
        return counts
    typical = statistics.median(measured)
    jobs = [job_of(record, plan.runs[name] - done[name], typical, now) for name, record in started.items()]
    worked, alive = sum(job.worked for job in jobs), sum(job.ended - job.began for job in jobs)
    if worked <= 0 or alive <= 0:
        return counts
    queued = [plan.runs[name] * typical for name, record in planned.items() if record is None]
    slots, efficiency = most_at_once(jobs), worked / alive
    seconds_left = makespan([job.left for job in jobs], queued, slots) / efficiency
    return replace(counts, seconds_left=seconds_left, slots=slots, efficiency=efficiency)


def job_of(record: RunRecord, epochs_left: int, typical: float, now: float) -> Job:
    """A job is alive from its process's start until its last write, or until now while it trains, but a
    job silent for two epochs is taken as gone (killed) since its last write plus those two epochs. The
    epoch in flight counts as worked for the time since the last epoch ended, at most one epoch."""
    per_epoch = statistics.fmean(record.epoch_seconds) if record.epoch_seconds else typical
    finished_here = [at for at in record.finished_at if at is not None]
    worked = sum(seconds for seconds, at in zip(record.epoch_seconds, record.finished_at, strict=True) if at)
    began = record.started_at - record.setup_seconds
    if record.status != "training":
        return Job(began, record.updated_at, worked, 0.0)
    last = max(finished_here, default=record.started_at)
    ended = min(now, last + SILENT_EPOCHS_BEFORE_GONE * per_epoch)
    in_flight = min(now - last, per_epoch) if epochs_left > 0 else 0.0
    return Job(began, ended, worked + in_flight, max(epochs_left * per_epoch - in_flight, 0.0))


def most_at_once(jobs: Iterable[Job]) -> int:
    """The most jobs alive at the same time (a job ending as another begins is not counted twice)."""
    changes = sorted([(job.began, 1) for job in jobs] + [(job.ended, -1) for job in jobs])
    alive = most = 0
    for _, change in changes:
        alive += change
        most = max(most, alive)
    return max(most, 1)


def makespan(running: list[float], queued: list[float], slots: int) -> float:
    """When the work ends on `slots` slots: the runs in flight first, then the queued ones in order, each
    on the first free slot (so a last wave with fewer runs than slots is not taken as full)."""
    free_at = [0.0] * slots
    for seconds in sorted(running, reverse=True) + queued:
        heapq.heappush(free_at, heapq.heappop(free_at) + seconds)
    return max(free_at)


def duration(seconds: float) -> str:
    """A remaining time as a person reads it: 40 s, 12 min, 1 h 05 min."""
    if seconds < 60:
        return f"{max(seconds, 1):.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def study_phrase(plan: Plan, study_estimate: StudyEstimate) -> str:
    done = f"study {plan.study}: {study_estimate.epochs_done}/{study_estimate.epochs_total} epochs"
    if study_estimate.epochs_done == study_estimate.epochs_total:
        return f"{done}, every epoch trained"
    if study_estimate.seconds_left is None:
        return f"{done}, time left not measured yet"
    return f"{done}, about {duration(study_estimate.seconds_left)} of training left"


def epoch_line(run_id: str, epochs: int, history: Mapping[str, list]) -> str:
    return (
        f"{run_id}: epoch {history['epoch'][-1]}/{epochs} train_loss {history['train_loss'][-1]:.4f}"
        f" val_loss {history['val_loss'][-1]:.4f} val_accuracy {history['val_accuracy'][-1]:.4f}"
        f" ({history['epoch_seconds'][-1]:.1f} s)"
    )


class RunProgress:
    """What one run says about its epochs: a log line each, and, inside a study (`progress_dir` and a
    plan there), its record and the study's estimate at the end of that line."""

    def __init__(
        self,
        run_id: str,
        epochs: int,
        record: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.record_file = record
        self.record = RunRecord(run_id, epochs)
        self.clock = clock

    def started(self, history: Mapping[str, list], setup_seconds: float = 0.0) -> None:
        """The run's state before its first epoch here: the epochs its checkpoint already holds, and the
        time its process took to get there."""
        self.record.epoch_seconds = list(history["epoch_seconds"])
        self.record.val_accuracy = list(history["val_accuracy"])
        self.record.finished_at = [None] * len(self.record.epoch_seconds)
        self.record.started_at = self.clock()
        self.record.setup_seconds = setup_seconds
        self._save()

    def epoch_done(self, history: Mapping[str, list]) -> None:
        self.record.epoch_seconds.append(history["epoch_seconds"][-1])
        self.record.val_accuracy.append(history["val_accuracy"][-1])
        self.record.finished_at.append(self.clock())
        self._save()
        line = epoch_line(self.record.run_id, self.record.epochs, history)
        study = self._study_phrase()
        log.info("%s%s", line, f" | {study}" if study else "")

    def finished(self, diverged: bool) -> None:
        self.record.status = "diverged" if diverged else "finished"
        self._save()

    def _save(self) -> None:
        if self.record_file is not None:
            self.record.updated_at = self.clock()
            atomic_write_json(self.record_file, asdict(self.record))

    def _study_phrase(self) -> str | None:
        if self.record_file is None:
            return None
        plan = read_plan(self.record_file.parent)
        if plan is None or self.record_file.stem not in plan.runs:
            return None
        records = read_records(self.record_file.parent, plan.runs)
        return study_phrase(plan, estimate(plan, records, self.clock()))


def snapshot(progress_dir: Path, now: float) -> str:
    """The study's estimate and each planned, unfinished run's last epoch, as plain text."""
    plan = read_plan(progress_dir)
    if plan is None:
        raise FileNotFoundError(
            f"{progress_dir / PLAN_FILE} does not exist: no Snakemake invocation has started training this study"
        )
    records = read_records(progress_dir, plan.runs)
    study_estimate = estimate(plan, records, now)
    head = (
        f"{study_phrase(plan, study_estimate)}; {study_estimate.runs_finished} of {study_estimate.runs_total} runs"
        f" finished (started {duration(now - plan.started_at)} ago)"
    )
    rows = [
        [
            record.run_id,
            f"{record.epochs_done}/{record.epochs}",
            f"{record.val_accuracy[-1]:.4f}" if record.val_accuracy else "-",
            f"{duration(now - record.updated_at)} ago",
        ]
        for name, record in sorted(records.items())
        if record.status == "training"
    ]
    if not rows:
        return head
    return head + "\n" + tabulate(rows, headers=["unfinished run", "epochs", "val_accuracy", "last written"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fmnist_initopt.progress",
        description="Where a study's training stands: epochs done and the time left (e.g. under `watch -n 60`).",
    )
    parser.add_argument("study_dir", type=Path, help="the study's results directory, e.g. results/main")
    args = parser.parse_args(argv)
    try:
        print(snapshot(study_progress_dir(args.study_dir), time.time()))
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
