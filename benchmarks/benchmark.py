"""Time the brief's reference loop against the project's, in one run, on the same data, threads and machine.

  (a) one training epoch (batch 64)          reference_loop.py --mode epoch  vs  project_loop.py
  (b) one evaluation pass over 10,000 images  (same processes as (a))
  (c) the quick study (config/quick.yaml): Snakemake with --cores THREADS  vs  the reference script
      training the same combinations one after another with THREADS threads
  (d) with --study-size: the six combinations x 10 epochs on the full data, one seed, the same way
  (e) each job's fixed cost: process start to first training step, the median over the quick study's
      jobs against the reference script's (paid once, as it trains everything in one process); and
      what PyTorch alone takes to get there (import torch, build an optimizer, one step: torch.optim
      imports torch._dynamo on first use), so the project's own part is the difference

Every project row is measured in fp32 and in bf16 (training.precision; `--precisions` picks); the
reference is the brief's fp32 loop, so a bf16 row's ratio is the project in bf16 against the brief as
written. Every contender runs in its own process, so each peak RSS (resident-set high-water mark) is its
own. (a) and (b) rotate the order of the contenders REPEATS times and keep each one's best time: the
machine may be shared, and the best of several interleaved runs is the least disturbed estimate.
`--smoke` shrinks everything (a few hundred images, one combination, one epoch) to check the script runs.

The table is printed and written, with the date, CPU, PyTorch version and load, to --output
(default docs/benchmark-results.md; with --smoke only where --output says).

    .venv/bin/python benchmarks/benchmark.py                # (a)-(c), data from data/
    .venv/bin/python benchmarks/benchmark.py --study-size   # and (d): about half an hour on 2 cores
    .venv/bin/python benchmarks/benchmark.py --smoke --data-root /some/dir --output /tmp/smoke.md
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import yaml
from tabulate import tabulate

from fmnist_initopt.data import FILE_NAMES, sha256_of
from fmnist_initopt.environment import cpu_model

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
WORKFLOW_FILES = ("Snakefile", "workflow", "src", "config", "envs")
RAW_SUBDIR = Path("FashionMNIST") / "raw"
DEFAULT_OUTPUT = REPO / "docs" / "benchmark-results.md"
PRECISIONS = ("fp32", "bf16")

# (a)/(b) use the full study's split: 50,000 training images, the 10,000-image test set evaluated.
FULL = {"split": {"source": "holdout", "size": 10_000, "seed": 0, "train_size": None}, "eval_size": 10_000}
SMOKE = {"split": {"source": "holdout", "size": 64, "seed": 0, "train_size": 256}, "eval_size": 128}
SMOKE_STUDY = {
    "grid": {"inits": ["he"], "optimizers": ["adam"], "seeds": [1]},
    "training": {"epochs": 1, "train_size": 256},
    "validation": {"size": 64},
}
# (c) is config/quick.yaml over config/config.yaml; (d) is this over config/config.yaml.
STUDY_SIZE = {
    "grid": {"seeds": [1]},
    "training": {"epochs": 10, "train_size": None},
    "validation": {"source": "holdout", "size": 10_000},
}
# Runs a command and reports the largest RSS among the processes it started (Snakemake's jobs included).
MEASURE = (
    "import json, resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)\n"
    "print(json.dumps({'seconds': time.perf_counter() - t, 'returncode': done.returncode,\n"
    "                  'peak_rss_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,\n"
    "                  'stderr_tail': done.stderr[-4000:] if done.returncode else ''}))\n"
)


# PyTorch's own fixed cost before a first training step, which any job pays, the brief's script too.
TORCH_ALONE = (
    "import json, torch\n"
    "from fmnist_initopt.environment import seconds_since_process_start\n"
    "layer = torch.nn.Linear(4, 2)\n"
    "optimizer = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)\n"
    "layer(torch.ones(1, 4)).sum().backward()\n"
    "optimizer.step()\n"
    "print(json.dumps({'seconds_before_first_step': seconds_since_process_start()}))\n"
)


def json_line_of(command: list[str], cwd: Path | None = None) -> dict:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def deep_update(base: dict, overrides: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        merged[key] = deep_update(merged[key], value) if isinstance(value, dict) and key in merged else value
    return merged


def project(precision: str) -> str:
    return f"project {precision}"


def epoch_and_eval(
    data_root: Path, threads: int, sizes: dict, repeats: int, precisions: list[str], device: str
) -> dict[str, list[dict]]:
    """(a)/(b) timings of the reference and of the project in each precision, rotating which goes
    first so none always meets the same load."""
    common = [
        "--data-root",
        str(data_root),
        "--threads",
        str(threads),
        "--split",
        json.dumps(sizes["split"]),
        "--eval-size",
        str(sizes["eval_size"]),
    ]
    commands = {"reference": [sys.executable, str(HERE / "reference_loop.py"), "--mode", "epoch", *common]}
    for precision in precisions:
        commands[project(precision)] = [
            sys.executable,
            str(HERE / "project_loop.py"),
            *common,
            "--precision",
            precision,
            "--device",
            device,
        ]
    names = list(commands)
    results: dict[str, list[dict]] = {name: [] for name in names}
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(json_line_of(commands[name]))
            print(f"  {name} epoch+eval #{repeat + 1}: {results[name][-1]}", file=sys.stderr, flush=True)
    return results


def study_config(kind: str, smoke: bool) -> tuple[dict, dict]:
    """The config overlay of a study kind over config/config.yaml, and the merged config."""
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    overlay = yaml.safe_load((REPO / "config" / "quick.yaml").read_text()) if kind == "quick" else STUDY_SIZE
    if smoke:
        overlay = deep_update(overlay, SMOKE_STUDY)
    return overlay, deep_update(base, overlay)


def project_study(data_root: Path, threads: int, overlay: dict, precision: str, device: str) -> dict:
    """One study through Snakemake, in a scratch copy of the workflow, up to the training; the data is
    given (not fetched), and decoding it (rule prepare_data) is part of the time."""
    with tempfile.TemporaryDirectory(prefix="fmnist-bench-") as scratch:
        workspace = Path(scratch)
        for name in WORKFLOW_FILES:
            source = REPO / name
            if source.is_dir():
                shutil.copytree(source, workspace / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(source, workspace / name)
        shutil.copytree(data_root / RAW_SUBDIR, workspace / "data" / RAW_SUBDIR)
        # The given files are the data (the real ones match the config's pins; --smoke's are synthetic).
        given = {name: sha256_of(data_root / RAW_SUBDIR / name) for name in FILE_NAMES}
        overlay = deep_update(
            overlay, {"training": {"precision": precision}, "data": {"sha256": given}, "device": device}
        )
        (workspace / "benchmark.yaml").write_text(yaml.safe_dump(overlay))
        snakemake = [
            *SNAKEMAKE,
            "--cores",
            str(threads),
            "--configfile",
            "benchmark.yaml",
            "--until",
            "train",
            "--quiet",
        ]
        result = json_line_of([sys.executable, "-c", MEASURE, *snakemake], cwd=workspace)
        if result.pop("returncode") != 0:
            raise RuntimeError(f"{shlex.join(snakemake)} failed:\n{result['stderr_tail']}")
        del result["stderr_tail"]
        runs = [json.loads(path.read_text()) for path in sorted(workspace.glob("results/*/runs/*/metrics.json"))]
        return {
            **result,
            "precision": "/".join(sorted({run["precision"] for run in runs})),
            "device": "/".join(sorted({run["environment"]["device"] for run in runs})),
            "runs": {
                run["run"]["id"]: {
                    "test_accuracy": run["test"]["accuracy"],
                    "median_step_seconds": run["cost"]["median_step_seconds"],
                    "seconds_before_first_step": run["cost"].get("seconds_before_first_step"),
                }
                for run in runs
            },
        }


def reference_study(data_root: Path, threads: int, config: dict) -> dict:
    grid = config["grid"]
    combinations = [[i, o, s] for i in grid["inits"] for o in grid["optimizers"] for s in grid["seeds"]]
    split = {
        "source": config["validation"]["source"],
        "size": config["validation"]["size"],
        "seed": config["validation"]["split_seed"],
        "train_size": config["training"]["train_size"],
    }
    result = json_line_of(
        [
            sys.executable,
            str(HERE / "reference_loop.py"),
            "--mode",
            "study",
            "--data-root",
            str(data_root),
            "--threads",
            str(threads),
            "--split",
            json.dumps(split),
            "--combinations",
            json.dumps(combinations),
            "--epochs",
            str(config["training"]["epochs"]),
        ]
    )
    return {**result, "runs": len(combinations)}


def torch_alone(repeats: int) -> dict:
    """PyTorch's own time from process start to a first optimizer step, the median of `repeats` processes."""
    seconds = [json_line_of([sys.executable, "-c", TORCH_ALONE])["seconds_before_first_step"] for _ in range(repeats)]
    return {"seconds_before_first_step": statistics.median(seconds), "each": seconds}


def studies(
    data_root: Path, threads: int, kind: str, smoke: bool, precisions: list[str], device: str
) -> dict[str, dict]:
    """One study kind: the project in each precision, then the reference script (fp32, on the CPU)."""
    overlay, config = study_config(kind, smoke)
    results = {}
    for precision in precisions:
        results[project(precision)] = project_study(data_root, threads, overlay, precision, device)
        print(f"  {project(precision)} {kind} study: {results[project(precision)]}", file=sys.stderr, flush=True)
    results["reference"] = reference_study(data_root, threads, config)
    print(f"  reference {kind} study: {results['reference']}", file=sys.stderr, flush=True)
    results["epochs"] = config["training"]["epochs"]
    return results


def precision_label(requested: str, result: dict) -> str:
    used = result["precision"]
    label = requested if used == requested else f"{requested} (ran as {used}: no native bfloat16)"
    return label if result["device"] == "cpu" else f"{label} on {result['device']}"


def row(
    label: str,
    reference_seconds: float,
    project_seconds: float,
    reference_mb: float | None = None,
    project_mb: float | None = None,
) -> list:
    memory = (
        ["n/a", "n/a", "n/a"]
        if reference_mb is None or project_mb is None
        else [reference_mb, project_mb, f"{project_mb - reference_mb:+.0f}"]
    )
    return [label, reference_seconds, project_seconds, f"{reference_seconds / project_seconds:.2f}x", *memory]


def quick_study_first_steps(study_results: dict[str, dict]) -> dict[str, float]:
    """Each project precision's median time from a job's start to its first step in the quick study
    (leaving out a precision whose runs could not read their process start time)."""
    medians = {}
    for name, result in study_results.get("quick", {}).items():
        if not name.startswith("project"):
            continue
        per_job = [run["seconds_before_first_step"] for run in result["runs"].values()]
        if None not in per_job:
            medians[name] = statistics.median(per_job)
    return medians


def fixed_cost_rows(study_results: dict[str, dict]) -> list[list]:
    """(e): the quick study's per-job time to the first step against the reference script's."""
    reference = study_results.get("quick", {}).get("reference", {}).get("seconds_before_first_step")
    if reference is None:
        return []
    return [
        row(
            f"(e) process start to first step, per job, {precision_label(name.split()[-1], study_results['quick'][name])}",
            reference,
            median,
        )
        for name, median in quick_study_first_steps(study_results).items()
    ]


def fixed_cost_note(study_results: dict[str, dict], torch_only: dict | None) -> str:
    """What of a project job's fixed cost is the project's own, beyond PyTorch's."""
    if torch_only is None:
        return ""
    parts = [
        f"{name.split()[-1]} {median - torch_only['seconds_before_first_step']:.2f} s"
        for name, median in quick_study_first_steps(study_results).items()
    ]
    if not parts:
        return ""
    return (
        f"; (e): PyTorch alone (import torch, build an optimizer, one step) takes "
        f"{torch_only['seconds_before_first_step']:.2f} s to its first step (median of "
        f"{len(torch_only['each'])}), so a project job's own fixed cost beyond PyTorch is " + ", ".join(parts)
    )


HEADERS = [
    "measure",
    "reference s",
    "project s",
    "ratio (speed-up)",
    "reference peak MB",
    "project peak MB",
    "memory delta MB",
]


def table_rows(timings: dict[str, list[dict]], study_results: dict[str, dict], sizes: dict) -> list[list]:
    rows = []
    train_size = (
        60_000 - sizes["split"]["size"] if sizes["split"]["train_size"] is None else sizes["split"]["train_size"]
    )
    reference = timings["reference"]
    best_reference = {key: min(r[key] for r in reference) for key in ("train_seconds", "eval_seconds")}
    reference_peak = max(r["peak_rss_mb"] for r in reference)
    measures = (
        ("train_seconds", f"(a) training epoch, {train_size:,} images"),
        ("eval_seconds", f"(b) evaluation pass, {sizes['eval_size']:,} images"),
    )
    for key, measure in measures:
        for name, runs in timings.items():
            if name == "reference":
                continue
            requested = name.split()[-1]
            label = f"{measure}, {precision_label(requested, runs[0])}"
            best = min(r[key] for r in runs)
            rows.append(row(label, best_reference[key], best, reference_peak, max(r["peak_rss_mb"] for r in runs)))
    for kind, results in study_results.items():
        reference_run = results["reference"]
        for name, result in results.items():
            if not name.startswith("project"):
                continue
            label = (
                f"({'c' if kind == 'quick' else 'd'}) {kind} study, {reference_run['runs']} runs x "
                f"{results['epochs']} epochs, {precision_label(name.split()[-1], result)}"
            )
            rows.append(
                row(
                    label,
                    reference_run["seconds"],
                    result["seconds"],
                    reference_run["peak_rss_mb"],
                    result["peak_rss_mb"],
                )
            )
    return rows + fixed_cost_rows(study_results)


def notes(repeats: int, fixed_cost: str = "") -> str:
    return (
        f"(a), (b): best of {repeats} interleaved runs each; (c), (d): one run each, the project through "
        "Snakemake (decoding the data included), the reference's time measured inside its script; "
        "the reference is always the brief's fp32 loop; peak = RSS high-water mark of the largest process"
        f"{fixed_cost}"
    )


def markdown(rows: list[list], header: dict[str, str], notes_text: str) -> str:
    lines = ["# Benchmark results", ""]
    lines.append(
        "Written by `benchmarks/benchmark.py`, overwritten by each run; the reference is the lab brief's loop."
    )
    lines.append("")
    lines += [f"- {key}: {value}" for key, value in header.items()]
    lines += ["", tabulate(rows, headers=HEADERS, tablefmt="github", floatfmt=".2f"), "", notes_text, ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data-root",
        type=Path,
        default=REPO / "data",
        help="directory holding FashionMNIST/raw/ (default: the workflow's data/)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count(),
        help="threads for every contender, and Snakemake's --cores (default: all cores)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of (a)/(b) per contender")
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cpu", help="the project's device (the reference runs on the CPU)"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one combination, one epoch")
    parser.add_argument("--skip-study", action="store_true", help="leave out (c)")
    parser.add_argument("--study-size", action="store_true", help="add (d), the default study's size with one seed")
    parser.add_argument(
        "--output", type=Path, help=f"Markdown file for the results (default {DEFAULT_OUTPUT}, none with --smoke)"
    )
    parser.add_argument("--json", type=Path, help="also write every measurement (each run's too) to this JSON file")
    args = parser.parse_args(argv)
    if not (args.data_root / RAW_SUBDIR).is_dir():
        sys.exit(f"no {args.data_root / RAW_SUBDIR}: run `snakemake --cores 1 fetch_data` first, or pass --data-root")
    output = args.output or (None if args.smoke else DEFAULT_OUTPUT)
    sizes = SMOKE if args.smoke else FULL
    header = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "CPU": f"{cpu_model()}, {os.cpu_count()} cores; {args.threads} threads per contender",
        "software": f"torch {torch.__version__}, Python {platform.python_version()}",
        "load average (1 min) at start": f"{os.getloadavg()[0]:.2f}",
        "command": shlex.join(["benchmarks/benchmark.py", *(sys.argv[1:] if argv is None else argv)]),
    }
    if args.smoke:
        header["sizes"] = "SMOKE (a few hundred images): checks the script, measures nothing"
    print(f"benchmark: {header['CPU']}, {header['software']}{', SMOKE sizes' if args.smoke else ''}", flush=True)
    if args.device == "cuda":
        header["GPU"] = f"{torch.cuda.get_device_name()} (the project's device; the reference runs on the CPU)"
    timings = epoch_and_eval(args.data_root, args.threads, sizes, args.repeats, args.precisions, args.device)
    kinds = ([] if args.skip_study else ["quick"]) + (["study-size"] if args.study_size else [])
    study_results = {
        kind: studies(args.data_root, args.threads, kind, args.smoke, args.precisions, args.device) for kind in kinds
    }
    torch_only = None if args.skip_study else torch_alone(args.repeats)
    header["load average (1 min) at end"] = f"{os.getloadavg()[0]:.2f}"
    rows = table_rows(timings, study_results, sizes)
    notes_text = notes(args.repeats, fixed_cost_note(study_results, torch_only))
    print(tabulate(rows, headers=HEADERS, floatfmt=".2f") + "\n" + notes_text)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(markdown(rows, header, notes_text))
        print(f"written to {output}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"header": header, "epoch_and_eval": timings, "studies": study_results, "torch_alone": torch_only},
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
