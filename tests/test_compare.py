"""Two generated studies compared run by run (fmnist_initopt.compare): what differs, B - A with the seed as the
unit, runs in one study only, the one-line errors, and nothing written into either study."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_study, planned_jobs
from fake_metrics import fake_metrics

from fmnist_initopt import compare
from fmnist_initopt.compare_report import compare_markdown

SEEDS = (1, 2, 3, 4, 5, 6)
COMBINATIONS = (("he", "adam"), ("he", "sgd"), ("xavier", "adam"), ("xavier", "sgd"))


def study_runs(
    shift: float = 0.0, precision: str = "fp32", seeds=SEEDS, step_scale: float = 1.0, combinations=COMBINATIONS
) -> list[dict]:
    """One metrics record per (combination, seed). A seed's accuracy is the same in every study (the seed decides
    the initial weights and data order); `shift` moves B's accuracy by that much plus a little pair noise."""
    runs = []
    for index, (init, optimizer) in enumerate(combinations):
        for seed in seeds:
            base = 0.85 + 0.01 * np.random.default_rng([index, seed]).standard_normal()
            noise = 0.001 * np.random.default_rng([index, seed, 7]).standard_normal() if shift else 0.0
            accuracy = float(base + shift + noise)
            step = 0.002 * step_scale if optimizer == "sgd" else 0.0025 * step_scale
            metrics = fake_metrics(
                init,
                optimizer,
                seed,
                [0.8, accuracy],
                test_accuracy=accuracy,
                precisions=[precision] * 2,
                cost={"median_step_seconds": step},
            )
            metrics["spec"]["precision"] = metrics["identity"]["precision"] = precision
            runs.append(metrics)
    return runs


def write_study(root: Path, name: str, runs: list[dict]) -> Path:
    directory = root / "results" / name
    for metrics in runs:
        path = directory / "runs" / metrics["run"]["id"] / "metrics.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(metrics))
    return directory


def snapshot(directory: Path) -> dict:
    """Every path under `directory` with its modification time and, for files, its bytes."""
    return {
        path: (path.stat().st_mtime_ns, path.read_bytes() if path.is_file() else None)
        for path in sorted(directory.rglob("*"))
    }


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(compare.__file__).parents[1])}
    return subprocess.run(
        [sys.executable, "-m", "fmnist_initopt.compare", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_identical_studies_differ_in_nothing(tmp_path):
    a = compare.load_study(write_study(tmp_path, "main", study_runs()))
    b = compare.load_study(write_study(tmp_path, "again", study_runs()))
    result = compare.compare_studies(a, b)
    assert result.differing == [] and len(result.paired) == len(COMBINATIONS) * len(SEEDS)
    assert result.only_a == result.only_b == result.incomplete == ()
    for measure in result.measures:
        pooled = measure.pooled.comparison
        assert pooled.estimate == 0.0 and pooled.n_units == len(SEEDS), measure.measure.column
        assert pooled.verdict == "not detected" and pooled.p == 1.0
    text = compare_markdown(result)
    assert "**What differs**: nothing" in text and "Nothing: every pair agrees in every setting." in text


def test_a_shifted_study_is_detected_with_the_seed_as_the_unit(tmp_path):
    a = compare.load_study(write_study(tmp_path, "main", study_runs()))
    b = compare.load_study(write_study(tmp_path, "bf16", study_runs(0.01, "bf16", step_scale=0.66)))
    result = compare.compare_studies(a, b)
    accuracy, step = result.measures[0], result.measures[1]
    pooled = accuracy.pooled.comparison
    # 24 pairs, but 6 seeds: the pooled test is over the seeds' means, so its exact p is 2 / 2**6, not 2 / 2**24
    assert pooled.n_units == len(SEEDS) and pooled.p == pytest.approx(2 / 2**6)
    assert pooled.verdict == "different" and pooled.ci_low > 0 and pooled.estimate == pytest.approx(0.01, abs=0.001)
    assert accuracy.pooled.mde.value > 0 and accuracy.pooled.mde.n_units == len(SEEDS)
    # per combination: the same p over 6 seeds, times 4 combinations (Holm): not detected, and no effect could be,
    # since 6 seeds cannot reach p <= 0.05 / 4 (the family's first Holm step), which the MDE says
    for row in accuracy.per_combination:
        assert row.comparison.p_adjusted == pytest.approx(4 * 2 / 2**6) and row.comparison.verdict == "not detected"
        assert row.mde.value is None and not row.mde.reachable and row.mde.alpha == pytest.approx(0.05 / 4)
    assert step.pooled.comparison.verdict == "different" and step.pooled.comparison.estimate < 0
    differing = {fact.name: fact for fact in result.differing}
    assert set(differing) == {"spec.precision", "precision used", "precision per epoch"}
    assert differing["precision used"].a_values == ("fp32",) and differing["precision used"].b_values == ("bf16",)
    assert differing["precision used"].pairs_differing == len(result.paired)


def test_runs_in_one_study_only_are_listed_and_not_paired(tmp_path):
    a = compare.load_study(write_study(tmp_path, "main", study_runs(seeds=(1, 2, 3, 4))))
    b = compare.load_study(write_study(tmp_path, "more", study_runs(seeds=(3, 4, 5, 6))))
    result = compare.compare_studies(a, b)
    assert {key[-1] for key in result.paired} == {3, 4}
    assert "he_adam_seed1" in result.only_a and "he_adam_seed6" in result.only_b
    assert len(result.only_a) == len(result.only_b) == 2 * len(COMBINATIONS)
    assert "| main    | he_adam_seed1, he_adam_seed2" in compare_markdown(result)


def test_a_pair_with_a_diverged_run_is_listed_and_left_out_of_the_tests(tmp_path):
    diverged = study_runs()
    diverged[0] = fake_metrics("he", "adam", 1, [0.5], diverged_at=(2, 10), epochs=2)
    a = compare.load_study(write_study(tmp_path, "main", study_runs()))
    b = compare.load_study(write_study(tmp_path, "lr", diverged))
    result = compare.compare_studies(a, b)
    assert result.incomplete == (("he_adam_seed1", "completed", "diverged"),)
    he_adam = result.measures[0].per_combination[0]
    assert (
        he_adam.scope == {"init": "he", "optimizer": "adam", "depth": 0}
        and he_adam.comparison.n_units == len(SEEDS) - 1
    )
    line = next(line for line in compare_markdown(result).splitlines() if line.startswith("| he_adam_seed1 "))
    assert [cell.strip() for cell in line.split("|")[1:4]] == ["he_adam_seed1", "completed", "diverged"]


def test_cli_writes_compare_md_beside_the_studies_and_nothing_into_them(tmp_path):
    a = write_study(tmp_path, "main", study_runs())
    b = write_study(tmp_path, "bf16", study_runs(0.01, "bf16"))
    before = {a: snapshot(a), b: snapshot(b)}
    done = run_cli("results/main", "results/bf16", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    page = tmp_path / "results" / "compare" / "main-vs-bf16" / "compare.md"
    text = page.read_text()
    assert text.startswith("# bf16 against main: did the answer change?")
    assert "![B - A per combination and pooled](compare.png)" in text and (page.parent / "compare.png").stat().st_size
    assert re.search(
        r"\*\*Final test accuracy\*\*: pooled bf16 - main \+0\.9\d pp \[\+0\.9\d, \+1\.0\d\] over 6 seeds, "
        r"p = 0\.031: \*\*different\*\*; per combination none is detectable: 6 seeds cannot reach p <= 0\.0125",
        text,
    ), text
    assert before == {a: snapshot(a), b: snapshot(b)}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("results/main", "results/main"), "are the same study"),
        (("results/main", "results/empty"), "results/empty has no runs/*/metrics.json: run that study first"),
        (("results/main", "results/nowhere"), "results/nowhere does not exist"),
        (("results/main", "results/other"), "has a partner in results/other"),
        (("results/main", "results/bf16", "--output", "results/main/x"), "lies inside study results/main"),
    ],
)
def test_unpairable_studies_fail_with_one_line_and_write_nothing(tmp_path, monkeypatch, capsys, arguments, message):
    write_study(tmp_path, "main", study_runs())
    write_study(tmp_path, "bf16", study_runs(0.01, "bf16"))
    write_study(tmp_path, "other", study_runs(seeds=(7, 8)))
    (tmp_path / "results" / "empty").mkdir()
    before = snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert compare.main(list(arguments)) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("compare: ") and message in err, err
    assert snapshot(tmp_path) == before


def test_a_config_file_names_its_study_and_an_old_record_is_unknown_not_a_crash(tmp_path, monkeypatch):
    old = study_runs()
    for metrics in old:  # written before issue 19: no identity, no per-epoch precision or device
        del metrics["identity"], metrics["history"]["precision"], metrics["history"]["device"]
    write_study(tmp_path, "main", old)
    write_study(tmp_path, "quick", study_runs())
    (tmp_path / "quick.yaml").write_text("study: quick\ngrid:\n  seeds: [1]\n")
    monkeypatch.chdir(tmp_path)
    a, b = compare.load_studies(tmp_path / "results" / "main", "quick.yaml")
    assert b.directory == Path("results/quick")
    differing = {fact.name: fact for fact in compare.compare_studies(a, b).differing}
    assert differing["training code (SHA-256)"].a_values == (compare.UNKNOWN,)
    assert differing["training code (SHA-256)"].b_values == ("0" * 64,)


def test_the_workflow_compares_when_the_config_asks_and_the_report_shows_it(tmp_path, synthetic_source):
    """compare_with in the config: `all` plans the comparison, the rule writes it, the HTML report shows it."""
    seeds = [1, 2, 3]
    study = make_study(
        tmp_path / "ws", synthetic_source, {"study": "bf16", "compare_with": "main", "grid": {"seeds": seeds}}
    )
    grid = study.config()["grid"]
    combinations = [(init, optimizer) for init in grid["inits"] for optimizer in grid["optimizers"]]
    write_study(study.root, "main", study_runs(seeds=seeds, combinations=combinations))
    write_study(study.root, "bf16", study_runs(0.002, "bf16", seeds=seeds, combinations=combinations))
    target = "results/compare/main-vs-bf16/compare.html"
    assert ("compare", "results/compare/main-vs-bf16/compare.md") in planned_jobs(study.snakemake("-n"))
    study.snakemake(
        "--cores", "1", "--allowed-rules", "compare", "--report", "report.html", "--report-after-run", target
    )
    text = (study.root / "results" / "compare" / "main-vs-bf16" / "compare.md").read_text()
    assert text.startswith("# bf16 against main") and "precision used (`fp32` → `bf16`)" in text
    assert "7. Comparison with another study" in (study.root / "report.html").read_text()
