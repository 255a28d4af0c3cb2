"""Same learning, measured as final test accuracy over seeds. Two comparisons:

  --compare reference (default)  the brief's loop against the project's (fp32), He + Adam. The data
      order differs between the loops (DataLoader shuffle vs the project's seeded permutation), so
      single runs differ by seed noise and the averages are what to compare.
  --compare precision            the project in bf16 against fp32, for every (init, optimizer) of the
      default grid (config/config.yaml). A seed gives both precisions the same initial weights and
      data order, so the difference is paired per seed. The two sets of runs are compared as any two
      studies are (fmnist_initopt.compare, the workflow's compare): what differs between them, and
      bf16 - fp32 in test accuracy, speed and cost per combination (Holm over the combinations) and
      pooled (each seed's mean over the combinations), with the seed as the unit, each with its
      minimum detectable effect.

Both train on the workflow's split (50,000 images unless --train-size, batch 64).

    .venv/bin/python benchmarks/equivalence.py [--seeds 1 2 3] [--epochs 2] [--threads 2]
    .venv/bin/python benchmarks/equivalence.py --compare precision --seeds 1 2 3 --epochs 10
    .venv/bin/python benchmarks/equivalence.py --compare precision --from-runs FP32_RUNS BF16_RUNS

--from-runs reads the runs two studies already trained (their results/<study>/ or results/<study>/runs
directories, e.g. the default study and the same grid with training.precision: bf16) instead of training
here. --output also writes the whole comparison page (compare.md's, with its figure beside it) with the
date, the CPU and the command (docs/precision-parity.md is written so).
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

import torch
import yaml
from tabulate import tabulate

HERE = Path(__file__).resolve().parent
import reference_loop  # noqa: E402
from project_loop import HE_ADAM, splits_from_raw  # noqa: E402

from fmnist_initopt import compare, compare_report  # noqa: E402
from fmnist_initopt.atomic import atomic_write_json  # noqa: E402
from fmnist_initopt.config import validated_config  # noqa: E402
from fmnist_initopt.environment import cpu_model, environment, precision_in_use  # noqa: E402
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


def compare_precision(root, seeds, epochs, train_size, output=None, runs_dir=None):
    """Train every (init, optimizer) of the default grid in fp32 and in bf16 here, write each run's metrics.json
    as a study would (<runs_dir>/<precision>/runs/<run>/), and compare the two as compare_finished_runs does."""
    # validated as the workflow validates it, so the schema's defaults (the data's pinned checksums) are filled in
    config = yaml.safe_load((HERE.parent / "config" / "config.yaml").read_text())
    config = validated_config(config, HERE.parent / "workflow" / "schemas" / "config.schema.yaml")
    config["training"].update(epochs=epochs, train_size=train_size)
    splits = splits_from_raw(root, split_of(train_size))
    if precision_in_use("bf16", CPU) != "bf16":
        sys.exit("this CPU has no native bfloat16: the bf16 runs would be fp32 runs (see the warning above)")
    grid = config["grid"]
    with tempfile.TemporaryDirectory() as scratch:
        studies = Path(runs_dir or scratch)
        for init, optimizer in itertools.product(grid["inits"], grid["optimizers"]):
            for precision in ("fp32", "bf16"):
                config["training"]["precision"] = precision
                for seed in seeds:
                    metrics = train_run(run_spec(config, init, optimizer, seed), splits, CPU)
                    metrics["environment"] = environment(CPU, torch.get_num_threads(), HERE.parent)
                    atomic_write_json(studies / precision / "runs" / metrics["run"]["id"] / "metrics.json", metrics)
            print(f"  {init} + {optimizer}: trained", file=sys.stderr, flush=True)
        compare_finished_runs(studies / "fp32", studies / "bf16", output)


def compare_finished_runs(fp32_runs: Path, bf16_runs: Path, output: Path | None = None) -> None:
    """bf16 - fp32 from two studies' runs (results/<study>/ or its runs/), paired by init, optimizer, depth and
    seed: fmnist_initopt.compare, the workflow's compare. Prints the headline and the accuracy table; --output
    also writes the whole page (and its figure beside it, same name, .png) with the date, CPU and command."""
    try:
        fp32, bf16 = compare.load_studies(fp32_runs, bf16_runs, labels=("fp32", "bf16"))
        result = compare.compare_studies(fp32, bf16)
    except compare.CompareError as error:
        sys.exit(f"equivalence: {error}")
    if not any(fact.name == "precision used" for fact in result.differing):
        print("warning: the runs of both studies computed in the same precision", file=sys.stderr)
    print("\n".join([*compare_report.headline(result), ""]))
    print(compare_report.measure_table(result.measures[0], "fp32", "bf16"))
    if output is None:
        return
    header = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "CPU": cpu_model(),
        "software": f"torch {torch.__version__}",
        "command": shlex.join(["benchmarks/equivalence.py", *sys.argv[1:]]),
    }
    notes = [*(f"- {key}: {value}" for key, value in header.items()), ""]
    compare_report.write_comparison(result, output, output.with_suffix(".png"), notes)
    print(f"written to {output}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", choices=("reference", "precision"), default="reference")
    parser.add_argument("--data-root", type=Path, default=HERE.parent / "data")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-size", type=int, default=None, help="training images (default: all 50,000)")
    parser.add_argument("--from-runs", type=Path, nargs=2, metavar=("FP32_RUNS", "BF16_RUNS"))
    parser.add_argument("--output", type=Path, help="also write the precision comparison page here (Markdown)")
    parser.add_argument("--runs-dir", type=Path, help="keep the runs --compare precision trains (default: not kept)")
    args = parser.parse_args(argv)
    if args.from_runs:
        compare_finished_runs(*args.from_runs, output=args.output)
        return
    torch.set_num_threads(args.threads)
    if args.compare == "reference":
        compare_reference(args.data_root, args.seeds, args.epochs, args.train_size)
    else:
        compare_precision(args.data_root, args.seeds, args.epochs, args.train_size, args.output, args.runs_dir)


if __name__ == "__main__":
    main()
