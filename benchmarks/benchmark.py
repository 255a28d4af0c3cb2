"""Time the brief's reference loop against the project's, in one run, on the same data, threads and machine.

  (a) one training epoch (batch 64)          reference_loop.py --mode epoch  vs  project_loop.py
  (b) one evaluation pass over 10,000 images  (same processes as (a))
  (c) the quick study (config/quick.yaml): Snakemake with --cores THREADS  vs  the reference script
      training the same combinations one after another with THREADS threads

Every contender runs in its own process, so each peak RSS (resident-set high-water mark) is its own.
(a) and (b) alternate reference and project REPEATS times and keep each one's best time: the machine
may be shared, and the best of several interleaved runs is the least disturbed estimate.
`--smoke` shrinks everything (a few hundred images, one combination, one epoch) to check the script runs.

    .venv/bin/python benchmarks/benchmark.py                # full benchmark, data from data/
    .venv/bin/python benchmarks/benchmark.py --smoke --data-root /some/dir
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import yaml
from tabulate import tabulate

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
WORKFLOW_FILES = ("Snakefile", "workflow", "config", "envs")
RAW_SUBDIR = Path("FashionMNIST") / "raw"

# (a)/(b) use the full study's split: 50,000 training images, the 10,000-image test set evaluated.
FULL = {"split": {"source": "holdout", "size": 10_000, "seed": 0, "train_size": None}, "eval_size": 10_000}
SMOKE = {"split": {"source": "holdout", "size": 64, "seed": 0, "train_size": 256}, "eval_size": 128}
SMOKE_STUDY = {
    "grid": {"inits": ["he"], "optimizers": ["adam"], "seeds": [1]},
    "training": {"epochs": 1, "train_size": 256},
    "validation": {"size": 64},
}
# Runs a command and reports the largest RSS among the processes it started (Snakemake's jobs included).
MEASURE = (
    "import json, resource, subprocess, sys, time\n"
    "t = time.perf_counter(); rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
    "print(json.dumps({'seconds': time.perf_counter() - t, 'returncode': rc,\n"
    "                  'peak_rss_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))\n"
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


def epoch_and_eval(data_root: Path, threads: int, sizes: dict, repeats: int) -> dict[str, list[dict]]:
    """Both loops' (a)/(b) timings, alternating which goes first so neither always meets the same load."""
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
    commands = {
        "reference": [sys.executable, str(HERE / "reference_loop.py"), "--mode", "epoch", *common],
        "project": [sys.executable, str(HERE / "project_loop.py"), *common],
    }
    results: dict[str, list[dict]] = {"reference": [], "project": []}
    for repeat in range(repeats):
        order = ["reference", "project"] if repeat % 2 == 0 else ["project", "reference"]
        for name in order:
            results[name].append(json_line_of(commands[name]))
            print(f"  {name} epoch+eval #{repeat + 1}: {results[name][-1]}", file=sys.stderr, flush=True)
    return results


def quick_study(data_root: Path, threads: int, smoke: bool) -> dict[str, dict]:
    """The quick study through Snakemake (in a scratch copy of the workflow), then the reference script."""
    with tempfile.TemporaryDirectory(prefix="fmnist-bench-") as scratch:
        workspace = Path(scratch)
        for name in WORKFLOW_FILES:
            source = REPO / name
            if source.is_dir():
                shutil.copytree(source, workspace / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(source, workspace / name)
        # The data is given, not fetched: only training is timed.
        shutil.copytree(data_root / RAW_SUBDIR, workspace / "data" / RAW_SUBDIR)
        overlays = ["config/quick.yaml"]
        config = deep_update(
            yaml.safe_load((REPO / "config" / "config.yaml").read_text()),
            yaml.safe_load((REPO / "config" / "quick.yaml").read_text()),
        )
        if smoke:
            (workspace / "smoke.yaml").write_text(yaml.safe_dump(SMOKE_STUDY))
            overlays.append("smoke.yaml")
            config = deep_update(config, SMOKE_STUDY)
        grid = config["grid"]
        combinations = [[i, o, s] for i in grid["inits"] for o in grid["optimizers"] for s in grid["seeds"]]
        snakemake = [SNAKEMAKE, "--cores", str(threads), "--configfile", *overlays, "--until", "train", "--quiet"]
        project = json_line_of([sys.executable, "-c", MEASURE, *snakemake], cwd=workspace)
        if project["returncode"] != 0:
            raise RuntimeError(f"snakemake failed in {workspace}; rerun: cd {workspace} && {' '.join(snakemake)}")
        print(f"  project quick study: {project}", file=sys.stderr, flush=True)
        split = {
            "source": config["validation"]["source"],
            "size": config["validation"]["size"],
            "seed": config["validation"]["split_seed"],
            "train_size": config["training"]["train_size"],
        }
        reference = json_line_of(
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
        print(f"  reference quick study: {reference}", file=sys.stderr, flush=True)
    return {"reference": reference, "project": project, "runs": len(combinations)}


def table(timings: dict[str, list[dict]], study: dict | None, sizes: dict, repeats: int) -> str:
    best = {
        name: {key: min(r[key] for r in runs) for key in ("train_seconds", "eval_seconds")}
        for name, runs in timings.items()
    }
    peak = {name: max(r["peak_rss_mb"] for r in runs) for name, runs in timings.items()}
    train_size = (
        60_000 - sizes["split"]["size"] if sizes["split"]["train_size"] is None else sizes["split"]["train_size"]
    )
    rows = [
        [
            f"(a) training epoch, {train_size:,} images",
            best["reference"]["train_seconds"],
            best["project"]["train_seconds"],
            peak["reference"],
            peak["project"],
        ],
        [
            f"(b) evaluation pass, {sizes['eval_size']:,} images",
            best["reference"]["eval_seconds"],
            best["project"]["eval_seconds"],
            peak["reference"],
            peak["project"],
        ],
    ]
    if study is not None:
        rows.append(
            [
                f"(c) quick study, {study['runs']} runs",
                study["reference"]["seconds"],
                study["project"]["seconds"],
                study["reference"]["peak_rss_mb"],
                study["project"]["peak_rss_mb"],
            ]
        )
    for row in rows:
        row.insert(3, f"{row[1] / row[2]:.2f}x")
        row.append(f"{row[-1] - row[-2]:+.0f}")
    headers = [
        "measure",
        "reference s",
        "project s",
        "ratio (speed-up)",
        "reference peak MB",
        "project peak MB",
        "memory delta MB",
    ]
    note = f"(a), (b): best of {repeats} interleaved runs each; (c): one run each; peak = RSS high-water mark"
    return tabulate(rows, headers=headers, floatfmt=".2f") + "\n" + note


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
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of (a)/(b) per loop")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one combination, one epoch")
    parser.add_argument("--skip-study", action="store_true", help="leave out (c)")
    args = parser.parse_args(argv)
    if not (args.data_root / RAW_SUBDIR).is_dir():
        sys.exit(f"no {args.data_root / RAW_SUBDIR}: run `snakemake --cores 1 fetch_data` first, or pass --data-root")
    sizes = SMOKE if args.smoke else FULL
    print(
        f"benchmark: {args.threads} threads, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores{', SMOKE sizes' if args.smoke else ''}",
        flush=True,
    )
    timings = epoch_and_eval(args.data_root, args.threads, sizes, args.repeats)
    study = None if args.skip_study else quick_study(args.data_root, args.threads, args.smoke)
    print(table(timings, study, sizes, args.repeats))


if __name__ == "__main__":
    main()
