"""Small, learnable stand-ins for FashionMNIST, written in its exact file format (gzipped IDX)."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np

IDX_UBYTE = 0x08


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file's bytes: magic (type, ndim), big-endian sizes, then the unsigned bytes."""
    header = struct.pack(">I", (IDX_UBYTE << 8) | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_gz(path: Path, payload: bytes) -> None:
    with gzip.open(path, "wb") as handle:
        handle.write(payload)


def synthetic_arrays(n_train: int, n_test: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Ten fixed class templates plus noise: a CNN separates them within an epoch or two."""
    rng = np.random.default_rng(seed)
    templates = rng.uniform(0, 255, size=(10, 28, 28))
    arrays = {}
    for prefix, count in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, size=count)
        images = 0.6 * templates[labels] + rng.normal(0, 40, size=(count, 28, 28)) + 50
        arrays[f"{prefix}-images-idx3-ubyte"] = np.clip(images, 0, 255).astype(np.uint8)
        arrays[f"{prefix}-labels-idx1-ubyte"] = labels.astype(np.uint8)
    return arrays


def write_synthetic_source(directory: Path, n_train: int = 600, n_test: int = 200, seed: int = 0) -> dict[str, str]:
    """Write the four *-ubyte.gz files into `directory`; return the SHA-256 of each decompressed file."""
    directory.mkdir(parents=True, exist_ok=True)
    checksums = {}
    for name, array in synthetic_arrays(n_train, n_test, seed).items():
        payload = idx_bytes(array)
        write_gz(directory / f"{name}.gz", payload)
        checksums[name] = hashlib.sha256(payload).hexdigest()
    return checksums
