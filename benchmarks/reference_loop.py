"""The lab brief's reference solution, kept as the brief writes it, to measure the project against.

Model, initialisations, optimizers, `evaluate_model` and the training loop follow
/work/shared/lab-brief.md line for line: torchvision FashionMNIST with ToTensor + Normalize((0.5,), (0.5,)),
DataLoader(batch_size=64, shuffle=True) for training, batches of 64 for evaluation. The only
additions are the data subsets (so both contenders see the same images as the workflow's
split), seeding per run, and timing/peak-memory reporting.

Run as a script, it prints one JSON line:
  --mode epoch   one training epoch, then one evaluation pass (benchmark parts a and b)
  --mode study   the given combinations one after another, as the brief's script does (part c)
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
import torchvision
import torchvision.transforms as transforms

from fmnist_initopt.data import split_indices  # noqa: E402
from fmnist_initopt.environment import seconds_since_process_start

BATCH_SIZE = 64


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.view(-1, 64 * 7 * 7)
        x = F.relu(self.fc1(x))
        x = self.fc2(x)
        return x


def initialize_he(model):
    for m in model.modules():
        if isinstance(m, nn.Conv2d) or isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
    return model


def initialize_xavier(model):
    for m in model.modules():
        if isinstance(m, nn.Conv2d) or isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
    return model


def get_sgd_optimizer(model, lr=0.01):
    return optim.SGD(model.parameters(), lr=lr, momentum=0.9)


def get_adam_optimizer(model, lr=0.001):
    return optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999))


def get_rmsprop_optimizer(model, lr=0.001):
    return optim.RMSprop(model.parameters(), lr=lr, alpha=0.99)


INITS = {"he": initialize_he, "xavier": initialize_xavier}
OPTIMIZERS = {"sgd": get_sgd_optimizer, "adam": get_adam_optimizer, "rmsprop": get_rmsprop_optimizer}


def evaluate_model(model, data_loader):
    model.eval()
    correct = 0
    total = 0
    with torch.no_grad():
        for images, labels in data_loader:
            outputs = model(images)
            _, predicted = torch.max(outputs.data, 1)
            total += labels.size(0)
            correct += (predicted == labels).sum().item()
    return correct / total


def train_one_epoch(model, optimizer, train_loader):
    criterion = nn.CrossEntropyLoss()
    model.train()
    running_loss = 0.0
    for images, labels in train_loader:
        optimizer.zero_grad()
        outputs = model(images)
        loss = criterion(outputs, labels)
        loss.backward()
        optimizer.step()
        running_loss += loss.item()
    return running_loss / len(train_loader)


def datasets(root, split):
    """(train, validation, test) datasets through torchvision's transforms, on the workflow's split."""
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    train_full = torchvision.datasets.FashionMNIST(root=str(root), train=True, download=False, transform=transform)
    test = torchvision.datasets.FashionMNIST(root=str(root), train=False, download=False, transform=transform)
    train_idx, val_idx = split_indices(
        len(train_full), split["source"], split["size"], split["seed"], split["train_size"]
    )
    train = torch.utils.data.Subset(train_full, train_idx.tolist())
    validation = test if val_idx is None else torch.utils.data.Subset(train_full, val_idx.tolist())
    return train, validation, test


def new_run(init, optimizer, seed):
    torch.manual_seed(seed)  # drives the brief's init and the DataLoader's shuffling
    model = INITS[init](CNN())
    return model, OPTIMIZERS[optimizer](model)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_epoch(root, split, eval_size, seed):
    train, _, test = datasets(root, split)
    model, optimizer = new_run("he", "adam", seed)
    train_loader = torch.utils.data.DataLoader(train, batch_size=BATCH_SIZE, shuffle=True)
    eval_loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(test, range(eval_size)), batch_size=BATCH_SIZE, shuffle=False
    )
    started = time.perf_counter()
    train_one_epoch(model, optimizer, train_loader)
    train_seconds = time.perf_counter() - started
    started = time.perf_counter()
    accuracy = evaluate_model(model, eval_loader)
    return {"train_seconds": train_seconds, "eval_seconds": time.perf_counter() - started, "accuracy": accuracy}


def run_study(root, split, combinations, epochs):
    """The brief's experiment loop: every combination trained and validated per epoch, one after another."""
    train, validation, test = datasets(root, split)
    results = {}
    started = time.perf_counter()
    before_first_step = None
    for init, optimizer_name, seed in combinations:
        model, optimizer = new_run(init, optimizer_name, seed)
        train_loader = torch.utils.data.DataLoader(train, batch_size=BATCH_SIZE, shuffle=True)
        val_loader = torch.utils.data.DataLoader(validation, batch_size=BATCH_SIZE, shuffle=False)
        test_loader = torch.utils.data.DataLoader(test, batch_size=BATCH_SIZE, shuffle=False)
        if before_first_step is None:
            before_first_step = seconds_since_process_start()
        for _ in range(epochs):
            train_one_epoch(model, optimizer, train_loader)
            evaluate_model(model, val_loader)
        results[f"{init}_{optimizer_name}_seed{seed}"] = evaluate_model(model, test_loader)
    return {
        "seconds": time.perf_counter() - started,
        "seconds_before_first_step": before_first_step,
        "test_accuracy": results,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("epoch", "study"), required=True)
    parser.add_argument("--data-root", required=True, help="directory holding FashionMNIST/raw/")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--split", required=True, help="JSON: {source, size, seed, train_size}")
    parser.add_argument("--eval-size", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--combinations", default="[]", help="JSON list of [init, optimizer, seed]")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    split = json.loads(args.split)
    if args.mode == "epoch":
        result = time_epoch(args.data_root, split, args.eval_size, args.seed)
    else:
        result = run_study(args.data_root, split, json.loads(args.combinations), args.epochs)
    print(json.dumps({**result, "peak_rss_mb": peak_rss_mb()}))


if __name__ == "__main__":
    main()
