"""The study's progress: the epoch lines, the run records and the estimate of the training time left."""

import json
import logging

import pytest

from fmnist_initopt import progress
from fmnist_initopt.progress import RunProgress, duration, estimate, read_plan, read_records, write_plan


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def history(epochs: int, seconds: float) -> dict[str, list]:
    return {
        "epoch": list(range(1, epochs + 1)),
        "train_loss": [0.5] * epochs,
        "val_loss": [0.4] * epochs,
        "val_accuracy": [0.8 + 0.01 * k for k in range(epochs)],
        "epoch_seconds": [seconds] * epochs,
    }


def simulate(tmp_path, runs: int, slots: int, epochs: int, epoch_seconds: float, start_cost: float, end_cost: float):
    """A study of `runs` runs on `slots` parallel job slots, each job `start_cost` seconds before its first
    epoch and `end_cost` after its last, driven through RunProgress with a fake clock. Returns, for each
    epoch line, (the estimate of the time left, the true time until the last epoch ends)."""
    clock = Clock()
    names = [f"run{k}" for k in range(runs)]
    write_plan(tmp_path, "sim", dict.fromkeys(names, epochs), now=0.0)
    job_seconds = start_cost + epochs * epoch_seconds + end_cost
    events = []  # (time, order, name, what, epoch)
    for index, name in enumerate(names):
        began = (index // slots) * job_seconds
        events.append((began + start_cost, 0, name, "start", 0))
        events += [(began + start_cost + e * epoch_seconds, 1, name, "epoch", e) for e in range(1, epochs + 1)]
        events.append((began + job_seconds, 2, name, "finish", epochs))
    last_epoch_ends = max(at for at, _, _, what, _ in events if what == "epoch")
    reporters = {name: RunProgress(name, epochs, progress.record_path(tmp_path, name), clock) for name in names}
    seen = []
    for at, _, name, what, epoch in sorted(events):
        clock.now = at
        if what == "start":
            reporters[name].started(history(0, epoch_seconds), setup_seconds=start_cost)
        elif what == "epoch":
            reporters[name].epoch_done(history(epoch, epoch_seconds))
            study = estimate(read_plan(tmp_path), read_records(tmp_path), at)
            seen.append((study.seconds_left, last_epoch_ends - at))
        else:
            reporters[name].finished(diverged=False)
    return seen


@pytest.mark.parametrize("slots", [1, 2, 3, 4])
def test_without_fixed_costs_every_estimate_is_the_true_time_left(tmp_path, slots):
    # 4 slots: the last wave has 2 runs on 4 slots, and is seen as such before it starts
    seen = simulate(tmp_path, runs=6, slots=slots, epochs=4, epoch_seconds=10.0, start_cost=0.0, end_cost=0.0)
    assert len(seen) == 24
    for estimated, true in seen:
        assert estimated == pytest.approx(true, abs=1e-6)


def test_with_fixed_costs_the_estimate_converges_on_the_true_time_left(tmp_path):
    seen = simulate(tmp_path, runs=8, slots=2, epochs=5, epoch_seconds=10.0, start_cost=4.0, end_cost=2.0)
    # the fixed costs are measured as they happen: from the second wave of jobs on, within 15%
    for estimated, true in seen[10:-2]:
        assert estimated == pytest.approx(true, rel=0.15)
    # and never wildly off at the start (the first line sees one epoch and the jobs in flight)
    assert seen[0][0] == pytest.approx(seen[0][1], rel=0.5)


def test_the_epoch_line_carries_the_run_the_epoch_the_accuracy_and_the_study(tmp_path, caplog):
    clock = Clock()
    write_plan(tmp_path, "main", {"a": 3, "b": 3}, now=0.0)
    reporter = RunProgress("he_adam_seed1", 3, progress.record_path(tmp_path, "a"), clock)
    reporter.started(history(0, 10.0))
    clock.now = 10.0
    with caplog.at_level(logging.INFO, logger="fmnist_initopt.progress"):
        reporter.epoch_done(history(1, 10.0))
    (line,) = [record.getMessage() for record in caplog.records]
    assert line.startswith("he_adam_seed1: epoch 1/3 ")
    assert "val_accuracy 0.8000" in line
    # b has not started: its 3 epochs at a's 10 s, a's 2 left, one job measured in parallel
    assert line.endswith("| study main: 1/6 epochs, about 50 s of training left")


def test_a_run_outside_a_study_logs_its_epoch_and_writes_nothing(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="fmnist_initopt.progress"):
        reporter = RunProgress("he_adam_seed1", 2)
        reporter.started(history(0, 1.0))
        reporter.epoch_done(history(1, 1.0))
        reporter.finished(diverged=False)
    (line,) = [record.getMessage() for record in caplog.records]
    assert "|" not in line and "epoch 1/2" in line
    assert list(tmp_path.iterdir()) == []


def test_a_record_without_a_plan_logs_no_study_part(tmp_path, caplog):
    reporter = RunProgress("he_adam_seed1", 2, progress.record_path(tmp_path, "a"))
    reporter.started(history(0, 1.0))
    with caplog.at_level(logging.INFO, logger="fmnist_initopt.progress"):
        reporter.epoch_done(history(1, 1.0))
    assert "|" not in caplog.records[0].getMessage()
    assert json.loads(progress.record_path(tmp_path, "a").read_text())["epoch_seconds"] == [1.0]


def test_a_new_plan_drops_the_records_of_its_runs_and_keeps_the_others(tmp_path):
    for name in ("again", "other"):
        RunProgress(name, 2, progress.record_path(tmp_path, name)).started(history(2, 1.0))
    plan = write_plan(tmp_path, "main", {"again": 2}, now=5.0)
    assert read_plan(tmp_path) == plan
    assert set(read_records(tmp_path)) == {"other"}


def test_resumed_epochs_count_as_done_but_not_as_measured_parallel_work(tmp_path):
    clock = Clock()
    write_plan(tmp_path, "main", {"resumed": 4}, now=0.0)
    reporter = RunProgress("resumed", 4, progress.record_path(tmp_path, "resumed"), clock)
    reporter.started(history(2, 10.0))  # two epochs from its checkpoint
    clock.now = 10.0
    reporter.epoch_done(history(3, 10.0))
    study = estimate(read_plan(tmp_path), read_records(tmp_path), clock.now)
    assert study.epochs_done == 3 and study.epochs_total == 4
    assert (study.slots, study.efficiency) == (1, pytest.approx(1.0))
    assert study.seconds_left == pytest.approx(10.0)


def test_a_killed_job_stops_counting_as_work_in_flight(tmp_path):
    write_plan(tmp_path, "main", {"killed": 5, "alive": 5}, now=0.0)
    clock = Clock()
    killed = RunProgress("killed", 5, progress.record_path(tmp_path, "killed"), clock)
    alive = RunProgress("alive", 5, progress.record_path(tmp_path, "alive"), clock)
    killed.started(history(0, 10.0))
    alive.started(history(0, 10.0))
    clock.now = 10.0
    killed.epoch_done(history(1, 10.0))  # and then nothing more from it
    for epoch in range(1, 5):
        clock.now = 10.0 * epoch
        alive.epoch_done(history(epoch, 10.0))
    study = estimate(read_plan(tmp_path), read_records(tmp_path), clock.now)
    # the killed job counts as alive for two epochs after its last write (not until now), working for one:
    # 60 s of epochs in 70 s of jobs alive
    assert (study.slots, study.efficiency) == (2, pytest.approx(60 / 70))
    # its 3 epochs left (one taken as in flight) beside the other's last epoch, at that efficiency
    assert study.seconds_left == pytest.approx(30.0 * 70 / 60)


def test_nothing_measured_yet_and_everything_trained_are_said_as_such(tmp_path):
    plan = write_plan(tmp_path, "main", {"a": 2}, now=0.0)
    nothing = estimate(plan, {}, now=3.0)
    assert nothing.seconds_left is None
    assert progress.study_phrase(plan, nothing) == "study main: 0/2 epochs, time left not measured yet"
    reporter = RunProgress("a", 2, progress.record_path(tmp_path, "a"))
    reporter.started(history(2, 1.0))
    done = estimate(plan, read_records(tmp_path), now=3.0)
    assert progress.study_phrase(plan, done) == "study main: 2/2 epochs, every epoch trained"


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(0.2, "1 s"), (42.4, "42 s"), (60, "1 min"), (754, "13 min"), (3600, "1 h 00 min"), (3900, "1 h 05 min")],
)
def test_durations_read_as_a_person_says_them(seconds, said):
    assert duration(seconds) == said


def test_the_command_prints_the_estimate_and_the_unfinished_runs(tmp_path, capsys):
    directory = progress.study_progress_dir(tmp_path)
    write_plan(directory, "main", {"a": 2, "b": 2}, now=0.0)
    RunProgress("he_adam_seed1", 2, progress.record_path(directory, "a")).started(history(1, 3.0))
    finished = RunProgress("he_sgd_seed1", 2, progress.record_path(directory, "b"))
    finished.started(history(2, 3.0))
    finished.finished(diverged=False)
    assert progress.main([str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("study main: 3/4 epochs")
    assert "1 of 2 runs finished" in printed
    assert "he_adam_seed1" in printed and "1/2" in printed
    assert "he_sgd_seed1" not in printed


def test_the_command_says_when_no_study_is_training(tmp_path, capsys):
    assert progress.main([str(tmp_path)]) == 1
    assert "plan.json does not exist" in capsys.readouterr().err
