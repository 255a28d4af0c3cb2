"""Never crash, always say what happened: aggregate, figures and findings on generated sets of runs.

The generator covers what real studies throw at the analysis: every run of one optimizer diverging at step 1
(no history at all), mid-training or in the last epoch; a combination with no completed run; one init, one
optimizer or one seed; identical values; constant curves; no diagnostics or cost block; no isolated cost table.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from fake_metrics import ANSWER_QUESTIONS as QUESTIONS
from fake_metrics import fake_metrics, write_metrics
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fmnist_initopt import figures
from fmnist_initopt.aggregate import combine, load_metrics, read_csv, summarize_runs, write_csv
from fmnist_initopt.findings import findings_markdown

CONFIDENCE = 0.95
SUMMARY_FIGURES = ("learning_curves", "accuracy_and_time", "epochs_to_target", "init_weights")


@dataclass
class Case:
    runs: list[dict]
    inits: list[str]
    optimizers: list[str]
    seeds: list[int]
    epochs: int
    target: float
    doomed: str | None  # optimizer whose every run diverged
    dead: tuple[str, str] | None  # combination with no completed run
    values: str
    step_costs: pd.DataFrame | None


def curve(kind: str, rng: np.random.Generator, epochs: int) -> list[float]:
    if kind == "identical":
        return list(np.linspace(0.80, 0.90, epochs))
    if kind == "constant curves":
        return [float(rng.choice([0.1, 0.5, 0.86]))] * epochs
    return sorted(float(v) for v in rng.uniform(0.4, 0.95, epochs))


def diverged_run(init, optimizer, seed, epochs, when, rng, kind):
    """A run that diverged at step 1 (no history), mid-training, or in its last epoch."""
    completed = {"step 1": 0, "mid": epochs // 2, "late": epochs - 1}[when]
    step = 1 if when == "step 1" else int(rng.integers(1, 8))
    return fake_metrics(
        init, optimizer, seed, curve(kind, rng, epochs)[:completed], diverged_at=(completed + 1, step), epochs=epochs
    )


def build_case(
    inits=("he", "xavier"),
    optimizers=("sgd", "adam", "rmsprop"),
    seeds=(1, 2, 3),
    epochs=3,
    kind="random",
    doomed=None,
    when="step 1",
    dead=None,
    sporadic=0.0,
    rng_seed=0,
    without=(),
    cost_noise=None,
    target=0.85,
) -> Case:
    """A generated study. `without` names blocks removed from every metrics.json ("diagnostics", "cost");
    `cost_noise` None means no isolated cost table, else how much init (the placebo) moves the per-step cost."""
    inits, optimizers, seeds = list(inits), list(optimizers), list(seeds)
    rng = np.random.default_rng(rng_seed)
    runs = []
    for init in inits:
        for optimizer in optimizers:
            for seed in seeds:
                if optimizer == doomed or (init, optimizer) == dead or rng.random() < sporadic:
                    runs.append(diverged_run(init, optimizer, seed, epochs, when, rng, kind))
                else:
                    values = curve(kind, rng, epochs)
                    test = values[-1] if kind != "random" else float(rng.uniform(0.4, 0.95))
                    runs.append(fake_metrics(init, optimizer, seed, values, test_accuracy=test, epochs=epochs))
    for run in runs:
        for block in without:
            del run[block]
    step_costs = None
    if cost_noise is not None:
        step_costs = pd.DataFrame(
            [
                {
                    "init": init,
                    "optimizer": optimizer,
                    "median_step_seconds": 0.002 * (1 + 0.2 * k) * (1 + cost_noise * j),
                    "repeats": 5,
                    "cpu_model": "test cpu",
                }
                for k, optimizer in enumerate(optimizers)
                for j, init in enumerate(inits)
            ]
        )
    return Case(runs, inits, optimizers, seeds, epochs, target, doomed, dead, kind, step_costs)


@st.composite
def cases(draw) -> Case:
    inits = draw(st.sampled_from([["he"], ["he", "xavier"], ["he", "xavier", "orthogonal"]]))
    optimizers = draw(st.sampled_from([["sgd"], ["sgd", "adam"], ["sgd", "adam", "rmsprop"]]))
    return build_case(
        inits,
        optimizers,
        seeds=draw(st.sampled_from([[1], [1, 2], [1, 2, 3]])),
        epochs=draw(st.integers(1, 3)),
        kind=draw(st.sampled_from(["random", "identical", "constant curves"])),
        doomed=draw(st.sampled_from([None, *optimizers])),
        when=draw(st.sampled_from(["step 1", "mid", "late"])),
        dead=draw(st.sampled_from([None, *[(i, o) for i in inits for o in optimizers]])),
        sporadic=draw(st.floats(0, 0.3)),
        rng_seed=draw(st.integers(0, 2**16)),
        without=draw(st.sampled_from([(), ("diagnostics",), ("cost",), ("diagnostics", "cost")])),
        cost_noise=draw(st.sampled_from([None, 0.0, 0.01, 0.5])),
        target=draw(st.sampled_from([0.3, 0.85, 0.99])),
    )


# The named cases always run, whatever the generator draws.
EVERY_SGD_RUN_DIVERGED_AT_STEP_1 = build_case(doomed="sgd", when="step 1", without=("diagnostics",), cost_noise=0.01)
A_COMBINATION_LOST_EVERY_SEED = build_case(dead=("xavier", "adam"), when="mid", sporadic=0.1, rng_seed=3)
ONE_OF_EVERYTHING = build_case(inits=["he"], optimizers=["adam"], seeds=[1], epochs=2, cost_noise=0.0)
IDENTICAL_RUNS = build_case(kind="identical", seeds=(1, 2), without=("cost",))
CONSTANT_CURVES = build_case(kind="constant curves", when="late", doomed="rmsprop", rng_seed=5)


def aggregate(case: Case, root: Path) -> tuple[pd.DataFrame, pd.DataFrame, list[dict]]:
    """As the aggregate rule does it: metrics files -> both CSVs, read back as the next rules read them."""
    all_metrics = load_metrics(write_metrics(root, case.runs))
    summary = summarize_runs(all_metrics, case.target)
    combinations = combine(summary, CONFIDENCE)
    write_csv(summary, root / "results" / "summary.csv")
    write_csv(combinations, root / "results" / "combinations.csv")
    assert len(summary) == len(case.runs) and len(combinations) == len(case.inits) * len(case.optimizers)
    return read_csv(root / "results" / "summary.csv"), read_csv(root / "results" / "combinations.csv"), all_metrics


@given(cases())
@example(EVERY_SGD_RUN_DIVERGED_AT_STEP_1)
@example(A_COMBINATION_LOST_EVERY_SEED)
@example(ONE_OF_EVERYTHING)
@example(IDENTICAL_RUNS)
@example(CONSTANT_CURVES)
def test_findings_always_say_what_happened(case):
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        summary, _, all_metrics = aggregate(case, root)
        output = root / "results" / "findings.md"
        text = findings_markdown(
            summary, all_metrics, case.target, CONFIDENCE, {}, {}, output, step_costs=case.step_costs
        )
    assert text.startswith("<!-- Generated") and "## Answer" in text and "## Methods" in text
    assert not re.search(r"\bnan\b|\binf\b", text, re.IGNORECASE), "a number leaked as nan/inf"
    answer = text.split("## Answer", 1)[1].split("## Best combinations", 1)[0]
    glance = [line for line in answer.split("### Evidence")[0].splitlines() if line.startswith("- ")]
    assert len(glance) == 5 and all(line.startswith(f"- {q}") for line, q in zip(glance, QUESTIONS)), glance
    assert "repeated-measures ANOVA" in answer
    assert "best estimate for every optimizer" not in text
    for run in case.runs:
        if run["status"] == "diverged":
            assert f"**{run['run']['id']} diverged**" in text
    if case.doomed:
        assert f"**Every run of {case.doomed} diverged**" in text
    if case.dead:
        dead = " + ".join(case.dead)
        assert re.search(rf"\| {re.escape(dead)} +\| 0 / {len(case.seeds)} +\|", text), dead  # summary table
        assert "no completed run" in text
    if len(case.inits) == 1:
        assert f"Untestable: only one init ({case.inits[0]}) was trained" in answer
    if len(case.optimizers) == 1:
        assert "Untestable: only one optimizer" in answer
    if len(case.seeds) == 1:
        assert "no uncertainty can be estimated" in text
    if case.values == "identical" and not any(m["status"] == "diverged" for m in case.runs):
        assert "no variance" in answer.lower()
    if case.step_costs is None:
        assert "Cost was not measured in isolation" in text and "Least compute" not in text
    else:
        assert "Placebo check" in text or "No placebo" in text
    if not any("cost" in m for m in case.runs):
        assert "did not record their own cost" in text
    assert "## Generalization" in text


@settings(max_examples=5)
@given(cases())
@example(EVERY_SGD_RUN_DIVERGED_AT_STEP_1)
@example(A_COMBINATION_LOST_EVERY_SEED)
def test_summary_figures_are_always_drawn(case):
    # Low resolution: the property is that every figure is written, not how it looks.
    original, figures.DPI = figures.DPI, 30
    try:
        with tempfile.TemporaryDirectory() as directory:
            root = Path(directory)
            summary, combinations, all_metrics = aggregate(case, root)
            paths = {name: root / "figures" / f"{name}.png" for name in SUMMARY_FIGURES}
            figures.learning_curves(all_metrics, combinations, case.target, CONFIDENCE, paths["learning_curves"])
            figures.accuracy_and_time(summary, combinations, CONFIDENCE, paths["accuracy_and_time"])
            figures.epochs_to_target(summary, combinations, case.target, CONFIDENCE, paths["epochs_to_target"])
            figures.init_weights(all_metrics, paths["init_weights"])
            for name, path in paths.items():
                assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    finally:
        figures.DPI = original
