"""Time one training step and one evaluation pass per model depth, as a training job runs them.

The project's own model, layout (channels-last) and optimizer (fused where PyTorch has one), one thread
(the train rule's `threads: 1`), batches of 64 random uint8 images, normalised per batch as train_epoch
does (the time does not depend on the values).
Times are CPU seconds of this process (time.process_time): on a shared machine wall time counts the
waits for a core, CPU time does not, and with one thread it is the wall time of an unshared core.
Depths alternate REPEATS times and each keeps its best time. Prints one JSON line per (depth, optimizer).

    PYTHONPATH=src .venv/bin/python benchmarks/depth_steps.py --depths 0 2 4 8 --steps 40
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from fmnist_initopt.data import normalise
from fmnist_initopt.study import RunSpec
from fmnist_initopt.training import EVAL_BATCH_SIZE, evaluate, model_and_optimizer

OPTIMIZERS = {
    "sgd": ("SGD", {"lr": 0.01, "momentum": 0.9}),
    "adam": ("Adam", {"lr": 0.001, "betas": [0.9, 0.999]}),
    "rmsprop": ("RMSprop", {"lr": 0.001, "alpha": 0.99}),
}


def spec(depth: int, optimizer: str) -> RunSpec:
    class_name, kwargs = OPTIMIZERS[optimizer]
    return RunSpec(
        init="he",
        init_function="kaiming_normal_",
        init_kwargs={"mode": "fan_in", "nonlinearity": "relu"},
        optimizer=optimizer,
        optimizer_class=class_name,
        optimizer_kwargs=kwargs,
        seed=1,
        epochs=1,
        batch_size=64,
        extra_conv_layers=depth,
    )


def step_seconds(depth: int, optimizer: str, steps: int, images: torch.Tensor, labels: torch.Tensor) -> float:
    model, optim = model_and_optimizer(spec(depth, optimizer), torch.device("cpu"))
    model.train()

    def step(index: int) -> None:
        batch = slice(index * 64 % len(labels), index * 64 % len(labels) + 64)
        loss = F.cross_entropy(model(normalise(images[batch])), labels[batch])
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()

    for index in range(3):  # warm-up: allocator, fused kernels, first-touch of the weights
        step(index)
    started = time.process_time()
    for index in range(steps):
        step(index)
    return (time.process_time() - started) / steps


def eval_seconds_per_1000(depth: int, images: torch.Tensor, labels: torch.Tensor) -> float:
    model, _ = model_and_optimizer(spec(depth, "sgd"), torch.device("cpu"))
    evaluate(model, images[:EVAL_BATCH_SIZE], labels[:EVAL_BATCH_SIZE])
    started = time.process_time()
    evaluate(model, images, labels)
    return (time.process_time() - started) * 1000 / len(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depths", type=int, nargs="+", default=[0, 2, 4, 8])
    parser.add_argument("--optimizers", nargs="+", default=["sgd", "adam"], choices=sorted(OPTIMIZERS))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2000, 1, 28, 28), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (2000,), generator=generator)
    best_step: dict[tuple[int, str], float] = {}
    best_eval: dict[int, float] = {}
    for _ in range(args.repeats):
        for depth in args.depths:
            for optimizer in args.optimizers:
                seconds = step_seconds(depth, optimizer, args.steps, images, labels)
                best_step[depth, optimizer] = min(seconds, best_step.get((depth, optimizer), seconds))
            seconds = eval_seconds_per_1000(depth, images, labels)
            best_eval[depth] = min(seconds, best_eval.get(depth, seconds))
    for (depth, optimizer), seconds in sorted(best_step.items()):
        record = {
            "depth": depth,
            "optimizer": optimizer,
            "threads": args.threads,
            "step_cpu_ms": round(1000 * seconds, 2),
            "eval_cpu_s_per_1000_images": round(best_eval[depth], 3),
        }
        print(json.dumps(record))


if __name__ == "__main__":
    main()
