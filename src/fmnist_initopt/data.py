"""FashionMNIST: fetch from an ordered list of sources, verify, decode once, and load as tensors.

The four files land decompressed in ``<root>/FashionMNIST/raw/``, the layout that
``torchvision.datasets.FashionMNIST(root, download=False)`` reads. A file is accepted
only if its decompressed bytes match the pinned SHA-256 and it is a well-formed IDX file.

``ensure_prepared`` then decodes them once into ``<root>/prepared/<key>/``, a cache addressed by the
raw files' pinned checksums (one ``.npy`` of unsigned bytes per raw file, plus ``manifest.json`` with
the SHA-256 of each ``.npy`` and of the raw file it came from), and every training job loads those
memory-mapped, refusing any whose bytes changed. The cache is no output of the workflow: whichever job
finds it missing fetches what it lacks and decodes it (into a private directory, renamed into place in
one step), so deleting the data costs a second of decoding and never retrains a run; other data has
another key.

PyTorch is imported only by the functions that build tensors: the workflow reads this module's
names at start-up, and fetching and decoding need only NumPy.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import math
import shutil
import struct
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fmnist_initopt.atomic import atomic_path, atomic_write_json
from fmnist_initopt.config import check_split_sizes

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

FILE_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
FIX_HINT = (
    "Fix: install the Debian package (apt-get install -y dataset-fashion-mnist, which puts the files in "
    "/usr/share/datasets/fashion-mnist), or add a directory of the four *-ubyte.gz files or a reachable "
    "mirror URL to data.sources in the config."
)
# The raw data is the output of one rule; the workflow and the loader agree on it here.
RAW_SUBDIR = Path("FashionMNIST") / "raw"
# The decoded arrays: <raw name>.npy per raw file, and the manifest, in prepared/<key of the checksums>/.
PREPARED_SUBDIR = Path("prepared")
PREPARED_KEY_LENGTH = 16
PREPARED_MANIFEST = "manifest.json"
PREPARED_FORMAT = 1


class DataError(RuntimeError):
    """No source yielded a verified copy of every file."""


@dataclass
class Attempt:
    source: str
    file: str
    problem: str

    def __str__(self) -> str:
        return f"{self.source}: {self.file}: {self.problem}"


def raw_dir(root: str | Path) -> Path:
    return Path(root) / RAW_SUBDIR


def root_of(raw_file: str | Path) -> Path:
    """The data root a raw file lies under (the inverse of raw_dir)."""
    return Path(raw_file).parents[len(RAW_SUBDIR.parts)]


def prepared_file(name: str) -> str:
    """The .npy file name that holds the decoded raw file `name`."""
    return f"{name}.npy"


def sha256_of(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _copy_source_gz(source: str, name: str, destination: Path, timeout: float) -> None:
    """Copy ``<source>/<name>.gz`` (a directory or an http(s) base URL) to `destination`."""
    if source.startswith(("http://", "https://")):
        url = f"{source.rstrip('/')}/{name}.gz"
        with urllib.request.urlopen(url, timeout=timeout) as response, open(destination, "wb") as out:
            shutil.copyfileobj(response, out)
    else:
        # Anything that is not an http(s) URL is a local directory: no other scheme is ever opened.
        directory = Path(source).expanduser()
        if not directory.is_dir():
            raise FileNotFoundError(f"no such directory {directory}")
        path = directory / f"{name}.gz"
        if not path.is_file():
            raise FileNotFoundError(f"no file {path}")
        shutil.copyfile(path, destination)
    if destination.stat().st_size == 0:
        raise ValueError("empty file (0 bytes)")


IDX_UNSIGNED_BYTE = 0x08
# What each file must hold: its number of dimensions and the size of every dimension after the first.
IDX_SHAPES = {"images": (3, (28, 28)), "labels": (1, ())}


def check_idx_header(path: Path, name: str) -> tuple[int, ...]:
    """The IDX header must announce unsigned bytes in the right shape, and the file must hold exactly
    that many; returns the array's shape."""
    ndim, inner = IDX_SHAPES["images" if "images" in name else "labels"]
    expected_magic = (IDX_UNSIGNED_BYTE << 8) | ndim
    with open(path, "rb") as handle:
        header = handle.read(4 * (ndim + 1))
    if len(header) < 4 * (ndim + 1):
        raise ValueError(f"not an IDX file: only {len(header)} bytes")
    magic, *sizes = struct.unpack(f">{ndim + 1}I", header)
    if magic != expected_magic:
        raise ValueError(
            f"not a valid IDX file: magic number 0x{magic:08x}, expected 0x{expected_magic:08x} "
            f"(unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''})"
        )
    if tuple(sizes[1:]) != inner:
        raise ValueError(f"IDX sizes {sizes}, expected N x {' x '.join(map(str, inner))}")
    expected_length = len(header) + math.prod(sizes)
    if path.stat().st_size != expected_length:
        raise ValueError(f"IDX header announces {expected_length} bytes, the file has {path.stat().st_size}")
    return tuple(sizes)


def decode_idx(path: Path, name: str) -> np.ndarray:
    """The unsigned bytes of an IDX file as an array of the shape its (checked) header announces."""
    shape = check_idx_header(path, name)
    header_length = 4 * (len(shape) + 1)
    return np.fromfile(path, dtype=np.uint8, offset=header_length).reshape(shape)


def _verified_file(source: str, name: str, expected_sha256: str, destination: Path, timeout: float) -> None:
    """Fetch, decompress and verify one file; it appears at `destination` only if it is right."""
    with tempfile.TemporaryDirectory(prefix="fmnist-") as staging:
        compressed_copy = Path(staging) / f"{name}.gz"
        _copy_source_gz(source, name, compressed_copy, timeout)
        with atomic_path(destination) as raw_tmp:
            with gzip.open(compressed_copy, "rb") as compressed, open(raw_tmp, "wb") as out:
                shutil.copyfileobj(compressed, out)
            if raw_tmp.stat().st_size == 0:
                raise ValueError("decompressed to 0 bytes")
            actual = sha256_of(raw_tmp)
            if actual != expected_sha256:
                raise ValueError(f"SHA-256 of the decompressed file is {actual}, expected {expected_sha256}")
            # A checksum only proves these are the pinned bytes; the pin itself may be wrong.
            check_idx_header(raw_tmp, name)


def _describe(error: Exception) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, TimeoutError) or isinstance(getattr(error, "reason", None), TimeoutError):
        return "timed out (no answer within data.timeout_seconds)"
    if isinstance(error, urllib.error.URLError):
        return f"unreachable ({error.reason})"
    if isinstance(error, (EOFError, gzip.BadGzipFile, zlib.error)):
        return f"not a complete gzip file ({error})"
    if isinstance(error, (FileNotFoundError, ValueError)):  # raised here with a complete message
        return str(error)
    return f"{type(error).__name__}: {error}"


def fetch_raw_files(
    root: str | Path, sources: list[str], sha256: dict[str, str], timeout: float = 30, names=FILE_NAMES
) -> Path:
    """Make the raw files `names` present and verified under `root`, trying `sources` in order per file.

    A file already present with the right checksum is kept as it is. Returns the raw directory.
    Raises DataError listing every attempt when a file could not be had from any source.
    """
    target_dir = raw_dir(root)
    target_dir.mkdir(parents=True, exist_ok=True)
    attempts: list[Attempt] = []
    for name in names:
        destination = target_dir / name
        if destination.is_file() and sha256_of(destination) == sha256[name]:
            log.info("%s: already present and verified", name)
            continue
        for source in sources:
            try:
                _verified_file(source, name, sha256[name], destination, timeout)
            except Exception as error:  # every failure of a source is reported, then the next is tried
                attempts.append(Attempt(source, name, _describe(error)))
                log.warning("%s", attempts[-1])
                continue
            log.info("%s: verified from %s", name, source)
            break
        else:
            tried = "\n".join(f"  - {attempt}" for attempt in attempts)
            raise DataError(f"could not obtain a verified copy of {name}. Tried:\n{tried}\n{FIX_HINT}")
    return target_dir


@dataclass
class Splits:
    """Images as uint8 pixels (N, 1, 28, 28), which training and evaluation normalise batch by batch
    (`normalise`): a quarter of the memory of float32 images, in RAM and on a GPU. Labels as int64."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    val_source: str

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train_y), "validation": len(self.val_y), "test": len(self.test_y)}


def normalise(pixels: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The brief's ToTensor + Normalize((0.5,), (0.5,)): uint8 pixels to values in [-1, 1], float32
    unless `dtype` says otherwise. Element by element, so a batch gets exactly the values it would
    have had if the whole set had been normalised at once."""
    import torch

    if pixels.dtype != torch.uint8:  # .to() would return a float tensor itself, and the in-place ops change it
        raise TypeError(f"normalise takes uint8 pixels, got {pixels.dtype}")
    return pixels.to(dtype or torch.float32).div_(255.0).sub_(0.5).div_(0.5)


def split_indices(
    n_images: int, val_source: str, val_size: int, split_seed: int, train_size: int | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Which images of the training file train and which validate (None: the test set validates)."""
    import torch

    check_split_sizes(n_images, val_source, val_size, train_size)
    order = torch.randperm(n_images, generator=torch.Generator().manual_seed(split_seed))
    if val_source == "holdout":
        val_idx, train_idx = order[:val_size], order[val_size:]
    else:
        val_idx, train_idx = None, order
    if train_size is not None:
        train_idx = train_idx[:train_size]
    return train_idx, val_idx


def prepared_dir(root: str | Path, sha256: dict[str, str]) -> Path:
    """Where the arrays decoded from the raw files with these checksums live: one directory per content."""
    key = hashlib.sha256(json.dumps(sha256, sort_keys=True).encode()).hexdigest()[:PREPARED_KEY_LENGTH]
    return Path(root) / PREPARED_SUBDIR / key


def ensure_prepared(root: str | Path, sha256: dict[str, str], sources: list[str], timeout: float = 30) -> Path:
    """The directory of the arrays decoded from the pinned raw files under `root`: the cached copy if it
    is complete, else fetched (only the raw files that are missing or not the pinned ones, from `sources`)
    and decoded now. Concurrent jobs each decode into a private directory and rename it into place: the
    first rename wins, the others discard theirs (same bytes), so a reader sees all or nothing."""
    target = prepared_dir(root, sha256)
    if (target / PREPARED_MANIFEST).is_file():
        return target
    fetch_raw_files(root, sources, sha256, timeout)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        prepare_data(raw_dir(root), staging)
        if target.is_dir() and not (target / PREPARED_MANIFEST).is_file():
            # arrays without their manifest (its last write) were left by a deletion, never by a writer
            shutil.rmtree(target, ignore_errors=True)
        try:
            staging.rename(target)
        except OSError:
            if not (target / PREPARED_MANIFEST).is_file():
                raise
            log.info("%s was prepared meanwhile by another job", target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def prepare_data(raw_directory: str | Path, prepared_directory: str | Path) -> Path:
    """Decode the four raw files once into `prepared_directory`: one .npy of unsigned bytes each, and
    manifest.json recording the SHA-256 of every .npy and of the raw file it was decoded from.
    Returns the manifest's path (written last, so its presence means every array is complete)."""
    raw_directory, prepared_directory = Path(raw_directory), Path(prepared_directory)
    files = {}
    for name in FILE_NAMES:
        source = raw_directory / name
        array = decode_idx(source, name)
        target = prepared_directory / prepared_file(name)
        with atomic_path(target) as tmp, open(tmp, "wb") as handle:
            np.save(handle, array, allow_pickle=False)
        files[name] = {
            "file": target.name,
            "sha256": sha256_of(target),
            "shape": list(array.shape),
            "dtype": str(array.dtype),
            "source": source.name,
            "source_sha256": sha256_of(source),
        }
        log.info("%s: decoded %s into %s", name, "x".join(map(str, array.shape)), target)
    manifest = prepared_directory / PREPARED_MANIFEST
    atomic_write_json(manifest, {"format": PREPARED_FORMAT, "files": files})
    return manifest


def _prepared_error(directory: Path, problem: str) -> DataError:
    return DataError(
        f"{problem}. Fix: delete {directory} and rerun the workflow: the next training job decodes it again "
        "from the verified raw files, and no finished run is retrained."
    )


def _unpinned_error(directory: Path, problem: str) -> DataError:
    raw = directory.parent.parent / RAW_SUBDIR
    return DataError(
        f"{problem}. Fix: delete {raw} and {directory} and rerun the workflow, which fetches the pinned "
        "files again and decodes them; no finished run is retrained."
    )


def load_prepared(directory: str | Path, pinned_sha256: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """The decoded arrays, memory-mapped (read-only), after checking that every .npy still has the
    SHA-256 the manifest recorded when it was written and, given `pinned_sha256` (the config's
    data.sha256), that it was decoded from the pinned raw files. Raises DataError otherwise."""
    directory = Path(directory)
    manifest_path = directory / PREPARED_MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise _prepared_error(directory, f"cannot read {manifest_path} ({error})") from None
    if manifest.get("format") != PREPARED_FORMAT:
        raise _prepared_error(directory, f"{manifest_path} is format {manifest.get('format')}, not {PREPARED_FORMAT}")
    arrays = {}
    for name in FILE_NAMES:
        if name not in files:
            raise _prepared_error(directory, f"{manifest_path} lists no {name}")
        entry = files[name]
        path = directory / entry["file"]
        if not path.is_file():
            raise _prepared_error(directory, f"{path} is missing")
        actual = sha256_of(path)
        if actual != entry["sha256"]:
            raise _prepared_error(
                directory,
                f"{path} changed after it was written: its SHA-256 is {actual}, {manifest_path} records {entry['sha256']}",
            )
        if pinned_sha256 is not None and entry["source_sha256"] != pinned_sha256[name]:
            raise _unpinned_error(
                directory,
                f"{path} was decoded from a {name} with SHA-256 {entry['source_sha256']}, "
                f"but data.sha256 pins {pinned_sha256[name]}",
            )
        arrays[name] = np.load(path, mmap_mode="r", allow_pickle=False)
    return arrays


def _tensor(array: np.ndarray, dtype=None) -> torch.Tensor:
    """A tensor over a writable `array`, copied only where it is read-only (memory-mapped) or of another dtype."""
    import torch

    return torch.from_numpy(np.require(array, dtype=dtype, requirements=["C_CONTIGUOUS", "WRITEABLE"]))


def _images(array: np.ndarray) -> torch.Tensor:
    """uint8 pixels (N, 28, 28) as a (N, 1, 28, 28) tensor, the layout the model takes."""
    return _tensor(array).unsqueeze(1)


def load_splits(
    directory: str | Path,
    val_source: str,
    val_size: int,
    split_seed: int,
    train_size: int | None,
    pinned_sha256: dict[str, str] | None = None,
) -> Splits:
    """Train/validation/test tensors as the config describes, from the prepared arrays in
    `directory` (see load_prepared); the split is the same for every run."""
    arrays = load_prepared(directory, pinned_sha256)
    images, labels = arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"]
    train_idx, val_idx = split_indices(len(labels), val_source, val_size, split_seed, train_size)
    test_x = _images(arrays["t10k-images-idx3-ubyte"])
    test_y = _tensor(arrays["t10k-labels-idx1-ubyte"], np.int64)
    if val_idx is None:
        val_x, val_y = test_x, test_y
    else:
        val_x, val_y = _images(images[val_idx.numpy()]), _tensor(labels[val_idx.numpy()], np.int64)
    return Splits(
        train_x=_images(images[train_idx.numpy()]),
        train_y=_tensor(labels[train_idx.numpy()], np.int64),
        val_x=val_x,
        val_y=val_y,
        test_x=test_x,
        test_y=test_y,
        val_source=val_source,
    )
