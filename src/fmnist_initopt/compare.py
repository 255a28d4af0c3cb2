"""Two studies side by side: did the answer change between them?

A researcher runs the default study, then the same grid in bf16, on a GPU, after a code change, with the test
set as validation or on a newer PyTorch, and asks each time whether the results moved by more than seed noise.
Every run of study B is paired with the run of study A that has the same (init, optimizer, depth, seed): a seed
fixes the initial weights and the data order in both, so the pair differs only by what differs between the
studies. This module says what that is (every spec key, the precision and device used, PyTorch, the training
code's hash, the data's checksums, the validation source, ...), and tests B - A in final test accuracy, speed
and cost with the report's one decision rule (stats.decision_rule_text): the seed is the unit, per combination
an exact sign-flip test over seeds with the combinations of one measure as one Holm family, pooled each seed's
differences averaged over the combinations first; every interval inverts its test, and each comparison carries
the smallest effect it could detect (power.mde_of). compare_report.py writes it up (compare.md and a figure).

    python -m fmnist_initopt.compare results/main results/bf16          # -> results/compare/main-vs-bf16/
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from fmnist_initopt import levels, power
from fmnist_initopt.stats import Comparison, alpha_of, untestable

RESULTS = Path("results")
DEFAULT_STUDY = "main"  # the config schema's default for `study`
COMPARE_DIR = "compare"  # comparisons live in results/compare/<a>-vs-<b>/, outside every study
PAIR_KEYS = ("init", "optimizer", "depth", "seed")
COMBINATION = ("init", "optimizer", "depth")
UNKNOWN = "unknown (not recorded)"


class CompareError(ValueError):
    """Two studies that cannot be compared; the message is one line naming the problem and the fix."""


@dataclass(frozen=True)
class Measure:
    column: str
    title: str
    unit: str  # of the difference as shown
    scale: float  # response units -> shown units
    digits: int
    higher_is_better: bool


MEASURES = (
    Measure("test_accuracy", "final test accuracy", "pp", 100.0, 2, True),
    Measure("median_step_seconds", "median step time", "ms", 1000.0, 3, False),
    Measure("training_seconds", "training time (wall clock)", "s", 1.0, 1, False),
    Measure("process_cpu_seconds", "process CPU time", "s", 1.0, 1, False),
)

# What a run was computed with besides its spec: label -> path in metrics.json (missing in old files: unknown).
RECORDED_FACTS = {
    "precision used": ("precision",),
    "precision per epoch": ("history", "precision"),
    "device": ("environment", "device"),
    "device per epoch": ("history", "device"),
    "device name": ("environment", "device_name"),
    "PyTorch": ("environment", "torch"),
    "torchvision": ("environment", "torchvision"),
    "Python": ("environment", "python"),
    "Snakemake": ("environment", "snakemake"),
    "training code (SHA-256)": ("identity", "training_code_sha256"),
    "git commit": ("environment", "git_commit"),
    "host": ("environment", "host"),
    "threads": ("environment", "threads"),
    "validation source (used)": ("data", "validation_source"),
    "training images": ("data", "train"),
    "validation images": ("data", "validation"),
    "test images": ("data", "test"),
    "model": ("model", "description"),
}


@dataclass(frozen=True)
class Study:
    label: str  # the study's name, as its comparisons are labelled
    directory: Path
    runs: dict  # pair key (init, optimizer, depth, seed) -> metrics.json record


@dataclass(frozen=True)
class Fact:
    """One recorded setting over the paired runs: its distinct values in each study, and in how many pairs the
    two runs disagree (0: the same in every pair)."""

    name: str
    a_values: tuple
    b_values: tuple
    pairs_differing: int


@dataclass(frozen=True)
class Row:
    """B - A of one measure in one scope ({} pooled; else init, optimizer, depth)."""

    scope: dict
    mean_a: float
    mean_b: float
    comparison: Comparison
    mde: power.DetectableEffect


@dataclass(frozen=True)
class MeasureResult:
    measure: Measure
    per_combination: tuple  # Row per combination, one Holm family
    pooled: Row


@dataclass(frozen=True)
class StudyComparison:
    a: Study
    b: Study
    confidence: float
    paired: tuple  # pair keys present in both studies, sorted
    only_a: tuple  # run ids
    only_b: tuple
    incomplete: tuple  # (run id, status in A, status in B) of pairs left out because a run did not complete
    facts: tuple  # Fact per recorded setting
    measures: tuple  # MeasureResult per MEASURES entry

    @property
    def differing(self) -> list[Fact]:
        return [fact for fact in self.facts if fact.pairs_differing]


# --------------------------------------------------------------------------------------------- reading studies


def study_directory(argument: str | Path) -> Path:
    """The results directory an argument names: a study's (results/<study>/), its runs/ directory, or a config
    file, whose `study` key (default main) names results/<study>/ under the current directory."""
    path = Path(argument)
    if not path.exists():
        raise CompareError(f"{path} does not exist: give a study's results directory (results/<study>/) or its config")
    if path.is_dir():
        return path.parent if path.name == "runs" else path
    try:
        config = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise CompareError(f"{path} is neither a results directory nor a readable config file ({error})") from None
    name = config.get("study", DEFAULT_STUDY) if isinstance(config, dict) else DEFAULT_STUDY
    return RESULTS / str(name)


def read_metrics(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CompareError(f"{path} is not a readable metrics.json ({error}): rerun that run or remove it") from None


def pair_key(metrics: dict[str, Any]) -> tuple:
    run = metrics["run"]
    return run["init"], run["optimizer"], int(run.get("depth", 0)), int(run["seed"])


def study_from_files(label: str, paths, directory: str | Path | None = None) -> Study:
    """A study from its metrics.json files (the workflow passes the ones its config defines), each at
    <directory>/runs/<run>/metrics.json; `directory` defaults to the first file's."""
    paths = [Path(path) for path in paths]
    directory = Path(directory) if directory is not None else paths[0].parents[2] if paths else Path(label)
    if not paths:
        raise CompareError(
            f"{directory} has no runs/*/metrics.json: run that study first (snakemake --configfile <its config>), "
            "or name a study that has runs"
        )
    runs = {}
    for path in paths:
        metrics = read_metrics(path)
        try:
            key = pair_key(metrics)
        except (KeyError, TypeError, ValueError):
            raise CompareError(
                f"{path} is not a run's metrics.json (no run init, optimizer and seed): remove it"
            ) from None
        if key in runs:
            raise CompareError(f"{path} repeats run {metrics['run']['id']} of {directory}: keep one copy of each run")
        runs[key] = metrics
    return Study(label, Path(directory), runs)


def load_study(argument: str | Path, label: str | None = None) -> Study:
    directory = study_directory(argument)
    paths = sorted((directory / "runs").glob("*/metrics.json"))
    return study_from_files(label or directory.resolve().name, paths, directory)


def load_studies(first: str | Path, second: str | Path, labels: tuple[str, str] | None = None) -> tuple[Study, Study]:
    """Studies A and B from two arguments, labelled by their directories' names (or `labels`); one study named
    twice is an error."""
    a_dir, b_dir = study_directory(first), study_directory(second)
    if a_dir.resolve() == b_dir.resolve():
        raise CompareError(f"{first} and {second} are the same study ({a_dir}): name two different studies")
    a_name, b_name = labels or (a_dir.resolve().name, b_dir.resolve().name)
    if a_name == b_name:  # two checkouts' studies of the same name: keep the labels apart
        a_name, b_name = f"{a_name}-a", f"{b_name}-b"
    return load_study(a_dir, a_name), load_study(b_dir, b_name)


# --------------------------------------------------------------------------------------------- what differs


def _at(record: dict, path: tuple) -> Any:
    for key in path:
        if not isinstance(record, dict) or key not in record:
            return UNKNOWN
        record = record[key]
    return record


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return "/".join(dict.fromkeys(value))  # per-epoch records: the values used, in order of first use
    return json.dumps(value, sort_keys=True)


def flattened(prefix: str, value: Any) -> dict[str, str]:
    """A nested record as dotted keys and text values: flattened("spec", {"split": {"val_size": 100}}) is
    {"spec.split.val_size": "100"} (an empty prefix adds none)."""
    if isinstance(value, dict) and value:
        return {
            name: text
            for key, item in value.items()
            for name, text in flattened(f"{prefix}.{key}" if prefix else str(key), item).items()
        }
    return {prefix: _text(value)}


def run_facts(metrics: dict[str, Any]) -> dict[str, str]:
    """Every setting a run records: each spec key (dotted, e.g. spec.optimizer_kwargs.lr) and RECORDED_FACTS."""
    facts = {name: _text(_at(metrics, path)) for name, path in RECORDED_FACTS.items()}
    return {**flattened("spec", metrics.get("spec", {})), **facts}


def facts_of(pairs: list[tuple[dict, dict]]) -> tuple[Fact, ...]:
    """Each setting over the pairs: its values in A and in B, and the number of pairs whose runs disagree."""
    a_facts = [run_facts(a) for a, _ in pairs]
    b_facts = [run_facts(b) for _, b in pairs]
    names = dict.fromkeys(name for facts in a_facts + b_facts for name in facts)
    out = []
    for name in names:
        a_values = [facts.get(name, UNKNOWN) for facts in a_facts]
        b_values = [facts.get(name, UNKNOWN) for facts in b_facts]
        differing = sum(x != y for x, y in zip(a_values, b_values))
        out.append(Fact(name, tuple(dict.fromkeys(a_values)), tuple(dict.fromkeys(b_values)), differing))
    return tuple(out)


# --------------------------------------------------------------------------------------------- statistics


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def measured(metrics: dict[str, Any]) -> dict[str, float]:
    cost = metrics.get("cost") or {}
    return {
        "test_accuracy": _number(metrics["test"]["accuracy"]),
        "median_step_seconds": _number(cost.get("median_step_seconds")),
        "training_seconds": _number(metrics.get("training_seconds")),
        "process_cpu_seconds": _number(cost.get("process_cpu_seconds")),
    }


def paired_frame(a: Study, b: Study, keys) -> pd.DataFrame:
    """Two rows per pair (column `study`: the label), measures as columns."""
    rows = [
        {**dict(zip(PAIR_KEYS, key)), "study": study.label, **measured(study.runs[key])}
        for key in keys
        for study in (a, b)
    ]
    return pd.DataFrame(rows, columns=[*PAIR_KEYS, "study", *(m.column for m in MEASURES)])


def _row(frame, result: levels.LevelComparison, measure: Measure, a: str, b: str, alpha: float, over=()) -> Row:
    """B - A from one scope's LevelComparison, with the MDE at `alpha` (the family's first Holm step)."""
    found = [c for c in result.comparisons if c.level == b]
    if found:
        comparison = found[0]
    else:
        reason = result.status.removeprefix("untestable: ") or f"no {measure.title} in both studies"
        comparison = untestable("study", b, a, result.scope, result.n_units, math.nan, reason, result.method, alpha)
    differences = levels.seed_differences(frame, measure.column, "study", b, a, over=over, scope=result.scope)
    mde = power.mde_of(differences.to_numpy(), alpha)
    mean = result.means.get
    return Row(dict(result.scope), mean(a, math.nan), mean(b, math.nan), comparison, mde)


def compare_measure(frame: pd.DataFrame, measure: Measure, a: str, b: str, confidence: float) -> MeasureResult:
    """Per combination (one Holm family over the combinations) and pooled (each seed's mean over combinations)."""
    common = dict(reference=a, higher_is_better=measure.higher_is_better)
    family = levels.compare_within(frame, measure.column, "study", COMBINATION, confidence, **common)
    alpha = alpha_of(confidence)
    testable = sum(any(c.level == b and c.p is not None for c in result.comparisons) for result in family)
    rows = tuple(_row(frame, result, measure, a, b, alpha / max(testable, 1)) for result in family)
    pooled = levels.compare_levels(frame, measure.column, "study", confidence, over=COMBINATION, **common)
    return MeasureResult(measure, rows, _row(frame, pooled, measure, a, b, alpha, over=COMBINATION))


def compare_studies(a: Study, b: Study, confidence: float = 0.95) -> StudyComparison:
    """Pair the runs of A and B, say what differs, and test B - A in every measure."""
    paired = sorted(set(a.runs) & set(b.runs), key=lambda key: tuple(map(str, key)))
    if not paired:
        raise CompareError(
            f"no run of {a.directory} ({len(a.runs)} runs) has a partner in {b.directory} ({len(b.runs)} runs): "
            "runs pair by init, optimizer, depth and seed, so compare studies of one grid"
        )
    complete = [key for key in paired if a.runs[key]["status"] == b.runs[key]["status"] == "completed"]
    incomplete = tuple(
        (a.runs[key]["run"]["id"], a.runs[key]["status"], b.runs[key]["status"])
        for key in paired
        if key not in complete
    )
    frame = paired_frame(a, b, complete)
    return StudyComparison(
        a,
        b,
        confidence,
        tuple(paired),
        tuple(sorted(a.runs[key]["run"]["id"] for key in set(a.runs) - set(b.runs))),
        tuple(sorted(b.runs[key]["run"]["id"] for key in set(b.runs) - set(a.runs))),
        incomplete,
        facts_of([(a.runs[key], b.runs[key]) for key in paired]),
        tuple(compare_measure(frame, measure, a.label, b.label, confidence) for measure in MEASURES),
    )


# --------------------------------------------------------------------------------------------- command line


def default_output(a: Study, b: Study) -> Path:
    """results/compare/<a>-vs-<b>/ beside A's study directory."""
    return a.directory.parent / COMPARE_DIR / f"{a.label}-vs-{b.label}"


def check_output(output: Path, studies) -> None:
    """Nothing is written into either study: an output inside one of them is an error."""
    target = output.resolve()
    for study in studies:
        if target.is_relative_to(study.directory.resolve()):
            raise CompareError(f"--output {output} lies inside study {study.directory}: choose a directory outside it")


def main(argv=None) -> int:
    from fmnist_initopt.compare_report import write_comparison

    parser = argparse.ArgumentParser(
        prog="python -m fmnist_initopt.compare", description="B - A, run by run, with the seed as the unit."
    )
    parser.add_argument("a", help="study A: results/<study>/ (or its runs/) or its config file; the reference")
    parser.add_argument("b", help="study B, compared with A")
    parser.add_argument("--output", type=Path, help="directory for compare.md (default results/compare/<a>-vs-<b>/)")
    parser.add_argument("--confidence", type=float, default=0.95, help="1 - the tests' alpha (default 0.95)")
    args = parser.parse_args(argv)
    if not 0.0 < args.confidence < 1.0:
        parser.error(f"--confidence is {args.confidence}; allowed: a number between 0 and 1, e.g. 0.95")
    try:
        a, b = load_studies(args.a, args.b)
        output = args.output or default_output(a, b)
        check_output(output, (a, b))
        result = compare_studies(a, b, args.confidence)
        page, _ = write_comparison(result, output / "compare.md", output / "compare.png")
    except CompareError as error:
        print(f"compare: {error}", file=sys.stderr)
        return 2
    print(f"wrote {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
