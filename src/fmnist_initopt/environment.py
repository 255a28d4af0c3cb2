"""Where a run executes: the device it trains on and the software it ran with."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path

import torch

log = logging.getLogger(__name__)

# /proc/cpuinfo flags of CPUs that compute in bfloat16 natively: AVX-512 BF16 or AMX (x86), BF16 (ARM).
# Elsewhere oneDNN emulates bfloat16, which is slower than plain fp32.
NATIVE_BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


# glibc's mallopt parameters, and the values keep_freed_memory sets: the largest mmap threshold glibc
# accepts on 64-bit, and a trim threshold well above one process's activations.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 32 * 2**20
TRIM_THRESHOLD_BYTES = 256 * 2**20


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


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux lists them (x86 "flags", ARM "Features"); empty elsewhere."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return set(value.split())
    except OSError:
        pass
    return set()


def native_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return device.type == "cpu" and bool(NATIVE_BF16_CPU_FLAGS & cpu_flags())


def precision_in_use(requested: str, device: torch.device) -> str:
    """The precision a run computes in: bf16 where the device computes in bfloat16 natively, else fp32
    (with a warning; the metrics record the precision used). On CUDA, fp32 also turns off TF32,
    which PyTorch would otherwise use for convolutions, so fp32 means float32 on every device."""
    if requested == "bf16" and not native_bf16(device):
        log.warning(
            "training.precision is bf16, but %s (%s) has no native bfloat16 arithmetic; training in fp32 instead",
            device.type,
            device_name(device),
        )
        return "fp32"
    if requested == "fp32" and device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return requested


def keep_freed_memory() -> bool:
    """Let glibc reuse freed activation buffers instead of handing them back to the kernel.

    By default glibc serves every allocation above 128 KiB with a fresh mmap and trims freed memory at the
    top of its heap; both thresholds adapt upward only to the largest block freed so far. A batch's
    activations (megabytes) are allocated and freed at every step, so until the thresholds have grown past
    them each step page-faults fresh memory in. bfloat16 halves the blocks, so bf16 suffers most. Measured on
    the 2-core CPU, benchmarks/project_loop.py without and with this, interleaved, best of 3 (20,000 training
    images, 2 threads): bf16 epoch 1.99 -> 1.82 s and evaluation of 10,000 images 0.29 -> 0.22 s; fp32
    2.97 -> 2.91 s and 0.43 -> 0.41 s. Process-wide; returns False where the C library has no mallopt (not
    glibc), where nothing changes."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )


def seconds_since_process_start() -> float | None:
    """How long this process has existed (Linux: from /proc), to show what a job spends before its work."""
    try:
        with open("/proc/self/stat") as handle:
            # field 22, counted after the command name (which may hold spaces) closes with ")"
            started_ticks = int(handle.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as handle:
            uptime = float(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return uptime - started_ticks / os.sysconf("SC_CLK_TCK")


def usable_cpu_count() -> int:
    """CPUs this process may run on (a SLURM or container limit included), else all the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


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
