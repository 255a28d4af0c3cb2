"""Same learning: test accuracy after EPOCHS epochs of the brief's loop and the project's, same seeds.

Both train He + Adam on the workflow's split (50,000 images, batch 64) and report test accuracy per
seed and averaged; the data order differs between the loops (DataLoader shuffle vs the project's
seeded permutation), so single runs differ by seed noise and the averages are what to compare.

    .venv/bin/python benchmarks/equivalence.py [--seeds 1 2 3] [--epochs 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
from tabulate import tabulate

HERE = Path(__file__).resolve().parent
import reference_loop  # noqa: E402
from project_loop import HE_ADAM  # noqa: E402

from fmnist_initopt.data import load_splits  # noqa: E402
from fmnist_initopt.study import RunSpec  # noqa: E402
from fmnist_initopt.training import train_run  # noqa: E402

SPLIT = {"source": "holdout", "size": 10_000, "seed": 0, "train_size": None}


def reference_accuracy(root, seed, epochs):
    train, _, test = reference_loop.datasets(root, SPLIT)
    model, optimizer = reference_loop.new_run("he", "adam", seed)
    loader = torch.utils.data.DataLoader(train, batch_size=reference_loop.BATCH_SIZE, shuffle=True)
    for _ in range(epochs):
        reference_loop.train_one_epoch(model, optimizer, loader)
    return reference_loop.evaluate_model(model, torch.utils.data.DataLoader(test, batch_size=64))


def project_accuracy(root, seed, epochs):
    splits = load_splits(root, SPLIT["source"], SPLIT["size"], SPLIT["seed"], SPLIT["train_size"])
    spec = RunSpec(**HE_ADAM, seed=seed, epochs=epochs, batch_size=64)
    return train_run(spec, splits, torch.device("cpu"))["test"]["accuracy"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=HERE.parent / "data")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for seed in args.seeds:
        rows.append(
            [
                seed,
                reference_accuracy(args.data_root, seed, args.epochs),
                project_accuracy(args.data_root, seed, args.epochs),
            ]
        )
        print(f"  seed {seed}: reference {rows[-1][1]:.4f}, project {rows[-1][2]:.4f}", file=sys.stderr, flush=True)
    means = [statistics.mean(row[i] for row in rows) for i in (1, 2)]
    rows.append(["mean", *means])
    print(tabulate(rows, headers=["seed", "reference test acc", "project test acc"], floatfmt=".4f"))
    print(f"difference of means (project - reference): {100 * (means[1] - means[0]):+.2f} percentage points")


if __name__ == "__main__":
    main()
