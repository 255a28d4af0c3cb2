"""The project's loop, timed the way reference_loop.py --mode epoch times the brief's.

Uses the workflow's own functions (prepare_data, load_splits, model_and_optimizer, train_epoch,
evaluate), so what is timed is what `snakemake` runs, in fp32 or bf16. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time

import torch

from fmnist_initopt.data import load_splits, prepare_data, raw_dir  # noqa: E402
from fmnist_initopt.environment import keep_freed_memory, precision_in_use, resolve_device  # noqa: E402
from fmnist_initopt.study import RunSpec  # noqa: E402
from fmnist_initopt.training import (  # noqa: E402
    epoch_generator,
    evaluate,
    model_and_optimizer,
    synchronize,
    train_epoch,
)

BATCH_SIZE = 64
HE_ADAM = dict(
    init="he",
    init_function="kaiming_normal_",
    init_kwargs={"mode": "fan_in", "nonlinearity": "relu"},
    optimizer="adam",
    optimizer_class="Adam",
    optimizer_kwargs={"lr": 1.0e-3, "betas": [0.9, 0.999]},
)


def splits_from_raw(root, split):
    """The workflow's splits from a directory holding FashionMNIST/raw/, decoded as rule prepare_data does."""
    with tempfile.TemporaryDirectory(prefix="fmnist-prepared-") as prepared:
        prepare_data(raw_dir(root), prepared)
        return load_splits(prepared, split["source"], split["size"], split["seed"], split["train_size"])


def time_epoch(root, split, eval_size, seed, precision="fp32", device_name="cpu"):
    """One training epoch and one evaluation pass, timed as train_run runs them: the data on the
    device, each timing closed by a device sync (evaluate's .item() syncs by itself)."""
    keep_freed_memory()  # as train_run does
    splits = splits_from_raw(root, split)
    device = resolve_device(device_name)
    precision = precision_in_use(precision, device)
    spec = RunSpec(**HE_ADAM, seed=seed, epochs=1, batch_size=BATCH_SIZE, precision=precision)
    model, optimizer = model_and_optimizer(spec, device)
    train_x, train_y = splits.train_x.to(device), splits.train_y.to(device)
    test_x, test_y = splits.test_x[:eval_size].to(device), splits.test_y[:eval_size].to(device)
    synchronize(device)
    started = time.perf_counter()
    train_epoch(model, optimizer, train_x, train_y, BATCH_SIZE, epoch_generator(seed, 1), precision=precision)
    synchronize(device)
    train_seconds = time.perf_counter() - started
    started = time.perf_counter()
    _, accuracy = evaluate(model, test_x, test_y, precision)
    return {
        "train_seconds": train_seconds,
        "eval_seconds": time.perf_counter() - started,
        "accuracy": accuracy,
        "precision": precision,
        "device": device.type,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-root", required=True, help="directory holding FashionMNIST/raw/")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--split", required=True, help="JSON: {source, size, seed, train_size}")
    parser.add_argument("--eval-size", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = time_epoch(args.data_root, json.loads(args.split), args.eval_size, args.seed, args.precision, args.device)
    print(json.dumps({**result, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
