"""Same learning, measured as final test accuracy over seeds. Two comparisons:

  --compare reference (default)  the brief's loop against the project's (fp32), He + Adam. The data
      order differs between the loops (DataLoader shuffle vs the project's seeded permutation), so
      single runs differ by seed noise and the averages are what to compare.
  --compare precision            the project in bf16 against fp32, for every (init, optimizer) of the
      default grid (config/config.yaml). A seed gives both precisions the same initial weights and
      data order, so the difference is paired per seed; bf16 passes for a combination when the mean
      difference is smaller than the seed-to-seed spread (the larger standard deviation of the two).
      With few seeds that criterion fails by chance even for identical precisions (the mean of 3 paired
      differences has about 0.8 x the spread's own sd), so each combination is also tested with the
      project's decision rule (exact paired permutation test, Holm over the combinations), and so is
      bf16 - fp32 pooled over every pair, with its minimum detectable effect.

Both train on the workflow's split (50,000 images unless --train-size, batch 64).

    .venv/bin/python benchmarks/equivalence.py [--seeds 1 2 3] [--epochs 2] [--threads 2]
    .venv/bin/python benchmarks/equivalence.py --compare precision --seeds 1 2 3 --epochs 10
    .venv/bin/python benchmarks/equivalence.py --compare precision --from-runs FP32_RUNS BF16_RUNS

--from-runs reads the runs two studies already trained (their results/runs directories, e.g. the
default study and the same grid with training.precision: bf16) instead of training here. --output
also writes the precision table as Markdown, with the date, the CPU and the command
(docs/precision-parity.md is written so).
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import shlex
import statistics
import sys
from pathlib import Path

import torch
import yaml
from tabulate import tabulate

HERE = Path(__file__).resolve().parent
import reference_loop  # noqa: E402
from project_loop import HE_ADAM, splits_from_raw  # noqa: E402

from fmnist_initopt import stats  # noqa: E402
from fmnist_initopt.environment import cpu_model, precision_in_use  # noqa: E402
from fmnist_initopt.study import RunSpec, run_spec  # noqa: E402
from fmnist_initopt.training import train_run  # noqa: E402

CPU = torch.device("cpu")


def split_of(train_size):
    return {"source": "holdout", "size": 10_000, "seed": 0, "train_size": train_size}


def reference_accuracy(root, split, seed, epochs):
    train, _, test = reference_loop.datasets(root, split)
    model, optimizer = reference_loop.new_run("he", "adam", seed)
    loader = torch.utils.data.DataLoader(train, batch_size=reference_loop.BATCH_SIZE, shuffle=True)
    for _ in range(epochs):
        reference_loop.train_one_epoch(model, optimizer, loader)
    return reference_loop.evaluate_model(model, torch.utils.data.DataLoader(test, batch_size=64))


def compare_reference(root, seeds, epochs, train_size):
    split = split_of(train_size)
    splits = splits_from_raw(root, split)
    rows = []
    for seed in seeds:
        project = train_run(RunSpec(**HE_ADAM, seed=seed, epochs=epochs, batch_size=64), splits, CPU)
        rows.append([seed, reference_accuracy(root, split, seed, epochs), project["test"]["accuracy"]])
        print(f"  seed {seed}: reference {rows[-1][1]:.4f}, project {rows[-1][2]:.4f}", file=sys.stderr, flush=True)
    means = [statistics.mean(row[i] for row in rows) for i in (1, 2)]
    rows.append(["mean", *means])
    print(tabulate(rows, headers=["seed", "reference test acc", "project test acc"], floatfmt=".4f"))
    print(f"difference of means (project - reference): {100 * (means[1] - means[0]):+.2f} percentage points")


PARITY_HEADERS = [
    "combination",
    "fp32 test acc",
    "bf16 test acc",
    "bf16 - fp32 (pp)",
    "seed spread (pp)",
    "within spread",
    "paired test (Holm over combinations)",
]


def precision_parity_rows(accuracies: dict[tuple[str, str], dict[str, list[float]]]) -> list[list]:
    """Per combination: mean test accuracy in each precision, the mean paired difference and the
    seed-to-seed spread (percentage points), whether the difference is within the spread, and the
    paired permutation test of bf16 - fp32, Holm-corrected over the combinations."""
    tests = stats.holm(
        stats.paired_difference(by_precision["bf16"], by_precision["fp32"], label="bf16 - fp32")
        for by_precision in accuracies.values()
    )
    rows = []
    for ((init, optimizer), by_precision), test in zip(accuracies.items(), tests):
        fp32, bf16 = by_precision["fp32"], by_precision["bf16"]
        difference = 100 * statistics.mean(b - f for b, f in zip(bf16, fp32))
        spread = 100 * max(statistics.stdev(fp32), statistics.stdev(bf16)) if len(fp32) > 1 else float("nan")
        within = "yes" if abs(difference) < spread else "no" if spread == spread else "n/a (one seed)"
        rows.append(
            [
                f"{init} + {optimizer}",
                statistics.mean(fp32),
                statistics.mean(bf16),
                difference,
                spread,
                within,
                stats.describe(test).split("; ")[0],
            ]
        )
    return rows


def pooled_parity(accuracies: dict[tuple[str, str], dict[str, list[float]]]) -> str:
    """bf16 - fp32 over every (combination, seed) pair: one test, with the smallest effect it could detect."""
    bf16 = [value for by_precision in accuracies.values() for value in by_precision["bf16"]]
    fp32 = [value for by_precision in accuracies.values() for value in by_precision["fp32"]]
    pooled = stats.paired_difference(bf16, fp32, label="bf16 - fp32")
    differences = [b - f for b, f in zip(bf16, fp32)]
    sd = statistics.stdev(differences) if len(differences) > 1 else float("nan")
    mde = stats.minimum_detectable_effect(sd, len(differences), alpha=pooled.alpha)
    return f"pooled over {len(differences)} pairs, bf16 - fp32: {stats.describe(pooled, mde=mde)}"


def print_parity(accuracies: dict[tuple[str, str], dict[str, list[float]]], title: str, output: Path | None) -> None:
    rows, pooled = precision_parity_rows(accuracies), pooled_parity(accuracies)
    print(title)
    print(tabulate(rows, headers=PARITY_HEADERS, floatfmt=".4f"))
    print(pooled)
    if output is None:
        return
    header = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "CPU": cpu_model(),
        "software": f"torch {torch.__version__}",
        "command": shlex.join(["benchmarks/equivalence.py", *sys.argv[1:]]),
    }
    lines = [
        "# bf16 against fp32: final test accuracy",
        "",
        "Written by `benchmarks/equivalence.py --compare precision`, overwritten by each run.",
        "",
        *[f"- {key}: {value}" for key, value in header.items()],
        "",
        title,
        "",
        tabulate(rows, headers=PARITY_HEADERS, tablefmt="github", floatfmt=".4f"),
        "",
        f"{pooled}.",
        "",
        "A seed gives both precisions the same initial weights and data order, so each difference is paired; "
        '"within spread": the mean difference is smaller than the larger of the two seed-to-seed standard '
        "deviations; the paired tests follow the report's decision rule (exact sign-flip permutation, Holm).",
        "",
    ]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(lines))
    print(f"written to {output}")


def compare_precision(root, seeds, epochs, train_size, output=None):
    config = yaml.safe_load((HERE.parent / "config" / "config.yaml").read_text())
    config["training"].update(epochs=epochs, train_size=train_size)
    splits = splits_from_raw(root, split_of(train_size))
    if precision_in_use("bf16", CPU) != "bf16":
        sys.exit("this CPU has no native bfloat16: the bf16 runs would be fp32 runs (see the warning above)")
    grid = config["grid"]
    accuracies = {}
    for init, optimizer in itertools.product(grid["inits"], grid["optimizers"]):
        accuracies[init, optimizer] = {}
        for precision in ("fp32", "bf16"):
            config["training"]["precision"] = precision
            accuracies[init, optimizer][precision] = [
                train_run(run_spec(config, init, optimizer, seed), splits, CPU)["test"]["accuracy"] for seed in seeds
            ]
        print(f"  {init} + {optimizer}: {accuracies[init, optimizer]}", file=sys.stderr, flush=True)
    print_parity(accuracies, f"{len(seeds)} seeds, {epochs} epochs, {len(splits.train_y):,} training images", output)


def compare_finished_runs(fp32_runs: Path, bf16_runs: Path, output: Path | None = None) -> None:
    """The parity table from two studies' metrics.json files, matched on (init, optimizer, seed)."""
    finished = {}
    for precision, directory in (("fp32", fp32_runs), ("bf16", bf16_runs)):
        for path in sorted(directory.glob("*/metrics.json")):
            metrics = json.loads(path.read_text())
            if metrics["status"] == "completed" and metrics["precision"] == precision:
                run = metrics["run"]
                finished[precision, run["init"], run["optimizer"], run["seed"]] = metrics
    keys = sorted({key[1:] for key in finished if key[0] == "bf16" and ("fp32", *key[1:]) in finished})
    accuracies = {}
    for init, optimizer, seed in keys:
        pair = accuracies.setdefault((init, optimizer), {"fp32": [], "bf16": []})
        for precision in ("fp32", "bf16"):
            pair[precision].append(finished[precision, init, optimizer, seed]["test"]["accuracy"])
    if not accuracies:
        sys.exit(f"no (init, optimizer, seed) finished in fp32 under {fp32_runs} and in bf16 under {bf16_runs}")
    epochs = {len(metrics["history"]["epoch"]) for metrics in finished.values()}
    seeds = sorted({seed for _, _, seed in keys})
    title = f"seeds {seeds}, {sorted(epochs)} epochs, from {fp32_runs} (fp32) and {bf16_runs} (bf16)"
    print_parity(accuracies, title, output)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", choices=("reference", "precision"), default="reference")
    parser.add_argument("--data-root", type=Path, default=HERE.parent / "data")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-size", type=int, default=None, help="training images (default: all 50,000)")
    parser.add_argument("--from-runs", type=Path, nargs=2, metavar=("FP32_RUNS", "BF16_RUNS"))
    parser.add_argument("--output", type=Path, help="also write the precision table here as Markdown")
    args = parser.parse_args(argv)
    if args.from_runs:
        compare_finished_runs(*args.from_runs, output=args.output)
        return
    torch.set_num_threads(args.threads)
    if args.compare == "reference":
        compare_reference(args.data_root, args.seeds, args.epochs, args.train_size)
    else:
        compare_precision(args.data_root, args.seeds, args.epochs, args.train_size, args.output)


if __name__ == "__main__":
    main()
