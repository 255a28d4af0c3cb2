"""Property tests: the signal and sweep sections and their figures are written for ANY set of runs, and say
what happened. Hypothesis generates the degenerate studies a real run can produce: every run of an optimizer
diverged at step 1 (empty history), mid-epoch or later; runs without diagnostics; one init, one optimizer,
one seed; identical values and constant curves; a sweep where an lr, or every lr, diverged."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from fake_metrics import fake_metrics
from hypothesis import event, given
from hypothesis import strategies as st

from fmnist_initopt import diagnostic_figures, signal_findings, sweep_findings

INITS = ("he", "xavier", "orthogonal")
OPTIMIZERS = ("sgd", "adam", "rmsprop")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# What can happen to the runs of one optimizer (grid) or of one lr (sweep).
FATES = ("completed", "diverged at step 1", "diverged mid-epoch 1", "diverged in epoch 2")


def _history(fate: str, epochs: int, accuracy: float, constant: bool) -> tuple[list[float], tuple | None]:
    curve = [accuracy if constant else accuracy - 0.02 * (epochs - e) for e in range(1, epochs + 1)]
    if fate == "completed":
        return curve, None
    if fate == "diverged at step 1":
        return [], (1, 1)
    if fate == "diverged mid-epoch 1":
        return [], (1, 7)
    return curve[:1], (2, 3)  # one completed epoch, then NaN


@st.composite
def grid_studies(draw):
    """Grid runs (one lr per optimizer) with a fate per optimizer, optional missing diagnostics, ties."""
    inits = draw(st.lists(st.sampled_from(INITS), min_size=1, max_size=3, unique=True))
    optimizers = draw(st.lists(st.sampled_from(OPTIMIZERS), min_size=1, max_size=3, unique=True))
    seeds = list(range(1, draw(st.integers(1, 3)) + 1))
    epochs = draw(st.integers(1, 3))
    possible = FATES if epochs > 1 else FATES[:3]  # a 1-epoch run cannot diverge in epoch 2
    fates = {opt: draw(st.sampled_from(possible)) for opt in optimizers}
    identical = draw(st.booleans())  # every run the same accuracy, every init the same signal
    constant = draw(st.booleans())
    # most studies have diagnostics everywhere (as the workflow records them); some lack them in part or all
    lacking_diagnostics = draw(st.sampled_from(["no run", "no run", "no run", "every other run", "every run"]))
    scales = {init: 1.0 if identical else draw(st.sampled_from([0.05, 0.3, 1.0, 1.4])) for init in inits}
    runs = []
    for i, (init, optimizer, seed) in enumerate((a, b, c) for a in inits for b in optimizers for c in seeds):
        accuracy = 0.8 if identical else draw(st.floats(0.1, 0.95))
        history, diverged_at = _history(fates[optimizer], epochs, accuracy, constant)
        with_diagnostics = lacking_diagnostics == "no run" or (lacking_diagnostics == "every other run" and i % 2)
        runs.append(
            fake_metrics(
                init,
                optimizer,
                seed,
                history,
                diverged_at=diverged_at,
                epochs=epochs,
                with_diagnostics=bool(with_diagnostics),
                signal_scale=scales[init],
            )
        )
    return runs


def no_nan(text: str) -> bool:
    return not re.search(r"\bnan\b", text, flags=re.IGNORECASE)


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC


@given(runs=grid_studies())
def test_the_signal_section_and_figures_survive_any_grid(runs):
    with tempfile.TemporaryDirectory() as directory:  # fresh per example: a stale figure must not pass
        check_signal(runs, Path(directory))


def check_signal(runs, tmp_path):
    section = signal_findings.signal_section(runs, 0.95)
    diagnostic_figures.signal_at_init_figure(runs, tmp_path / "at_init.png")
    diagnostic_figures.grad_norm_over_epochs_figure(runs, tmp_path / "over_epochs.png")
    assert_png(tmp_path / "at_init.png")
    assert_png(tmp_path / "over_epochs.png")

    assert section.startswith("## Why: signal propagation at initialisation\n")
    assert no_nan(section)
    # every run that never finished epoch 1 is named, every run without diagnostics too
    early = [m["run"]["id"] for m in runs if not m["history"]["val_accuracy"]]
    if early:
        assert f"{len(early)} of {len(runs)} runs never finished epoch 1" in section
        assert all(run_id in section for run_id in early)
    blind = [m["run"]["id"] for m in runs if "diagnostics" not in m]
    if blind:
        assert f"{len(blind)} of {len(runs)} runs carry no signal diagnostics" in section
    # the verdict branch follows from the runs, computed independently here
    measured = {m["run"]["init"]: m["diagnostics"]["activation_std"]["fc2"][0] for m in runs if "diagnostics" in m}
    event(f"early: {bool(early)}, blind: {bool(blind)}, inits: {len(measured)}")
    if not measured:
        assert "No run carries signal diagnostics" in section
    elif len(measured) < 2:
        assert f"Only 1 init with a measured output signal ({next(iter(measured))})" in section
    elif len(set(measured.values())) == 1:
        assert "Every init sends the same signal to the output" in section
    else:
        weak = min(measured, key=measured.get)
        assert f"**{weak}** sends the weaker signal to the output" in section
        assert "Pooled over optimizers" in section
        if not any(m["history"]["val_accuracy"] for m in runs):
            assert "untestable" in section
        assert "Welch" not in section


SWEEP_LRS = {"sgd": (0.001, 0.003, 0.01, 0.03, 0.1), "adam": (0.0001, 0.0003, 0.001, 0.003)}
DEFAULT_LRS = {"sgd": 0.01, "adam": 0.001}


@st.composite
def sweeps(draw):
    """Sweep runs: per optimizer some lrs (the default among them or not), a fate per lr, ties and constants."""
    inits = draw(st.lists(st.sampled_from(INITS[:2]), min_size=1, max_size=2, unique=True))
    optimizers = draw(st.lists(st.sampled_from(sorted(SWEEP_LRS)), min_size=1, max_size=2, unique=True))
    seeds = list(range(1, draw(st.integers(1, 3)) + 1))
    identical = draw(st.booleans())
    runs = []
    for optimizer in optimizers:
        count = draw(st.sampled_from([3, 2, 4, 1]))  # mostly a real range; sometimes a single lr
        lrs = draw(st.permutations(SWEEP_LRS[optimizer]))[:count]
        for lr in lrs:
            fate = draw(st.sampled_from(FATES[:2] + ("completed",)))  # completed twice as likely
            for init in inits:
                for seed in seeds:
                    accuracy = 0.8 if identical else draw(st.floats(0.1, 0.95))
                    history, diverged_at = _history(fate, 2, accuracy, identical)
                    runs.append(fake_metrics(init, optimizer, seed, history, diverged_at=diverged_at, epochs=2, lr=lr))
    return runs


def expected_best(runs, init, optimizer):
    """The best lr by the documented rule, recomputed: highest mean validation accuracy, no seed diverged,
    the smaller lr on a tie; None when every lr lost a seed."""
    by_lr = {}
    for m in runs:
        if (m["run"]["init"], m["run"]["optimizer"]) == (init, optimizer):
            by_lr.setdefault(m["spec"]["optimizer_kwargs"]["lr"], []).append(m)
    best, best_value = None, None
    for lr in sorted(by_lr):
        if any(m["status"] == "diverged" for m in by_lr[lr]):
            continue
        value = sum(m["history"]["val_accuracy"][-1] for m in by_lr[lr]) / len(by_lr[lr])
        if best_value is None or value > best_value:
            best, best_value = lr, value
    return best, sorted(by_lr)


@given(runs=sweeps())
def test_the_sweep_section_and_figure_survive_any_sweep(runs):
    with tempfile.TemporaryDirectory() as directory:
        check_sweep(runs, Path(directory))


def check_sweep(runs, tmp_path):
    section = sweep_findings.sweep_section(runs, DEFAULT_LRS, "holdout")
    diagnostic_figures.lr_sweep_figure(runs, DEFAULT_LRS, tmp_path / "lr_sweep.png")
    assert_png(tmp_path / "lr_sweep.png")

    assert section.startswith("## Learning-rate sensitivity\n")
    assert no_nan(section)
    diverged = sum(m["status"] == "diverged" for m in runs)
    assert f"{len(runs)} runs, {diverged} diverged" in section
    pairs = sorted({(m["run"]["init"], m["run"]["optimizer"]) for m in runs})
    rows = {line.split("|")[1].strip(): line for line in section.splitlines() if line.startswith("| ")}
    bracketed = True
    for init, optimizer in pairs:
        best, swept = expected_best(runs, init, optimizer)
        row = rows[f"{init} + {optimizer}"]
        if best is None:
            assert "all diverged" in row and "every swept lr lost a seed to divergence" in row
        elif len(swept) == 1:
            assert f"no: only one lr swept ({best:g})" in row
        elif best == swept[-1]:
            assert f"no: best at the edge ({best:g}, the largest swept)" in row
        elif best == swept[0]:
            assert f"no: best at the edge ({best:g}, the smallest swept)" in row
        else:
            assert "| yes " in row
            event("bracketed pair")
            continue
        event(f"unbracketed pair: {row.split('|')[6].strip()[:20]}")
        bracketed = False
        assert f"try `lr_sweep.learning_rates.{optimizer}: [" in section
    assert ("each optimum is bracketed" in section) is bracketed
    assert ("**Not bracketed:**" in section) is not bracketed
    assert "larger seed standard deviation" not in section
