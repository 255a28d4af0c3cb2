"""Where a run executes: the device it trains on and the software it ran with."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path

import torch


class DeviceError(RuntimeError):
    pass


def resolve_device(requested: str) -> torch.device:
    """`auto` picks CUDA when a GPU is visible, else the CPU; `cuda` without a GPU is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise DeviceError(
            "device is 'cuda' but PyTorch sees no CUDA GPU "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}). "
            "Fix: run on a GPU node, or set device: auto (or cpu) in the config."
        )
    return torch.device(requested)


def device_name(device: torch.device) -> str:
    """The GPU's or the CPU's model: speed compares only within one model."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def git_commit(directory: str | Path) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def environment(device: torch.device, threads: int, code_dir: str | Path) -> dict:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "snakemake": _version("snakemake"),
        "device": device.type,
        "device_name": device_name(device),
        "threads": threads,
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "git_commit": git_commit(code_dir),
        # ties the result to the scheduler's accounting (sacct -j ID) when it ran under SLURM
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
    }
