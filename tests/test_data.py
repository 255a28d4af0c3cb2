import gzip
import shutil

import pytest
import torch
from synthetic import write_synthetic_source

from fmnist_initopt.data import FILE_NAMES, DataError, fetch_raw_files, load_splits, raw_dir


@pytest.fixture
def good_source(tmp_path):
    directory = tmp_path / "good"
    return directory, write_synthetic_source(directory)


def leftovers(root):
    """Anything in the data directory that is not one of the four final files."""
    return sorted(p.name for p in raw_dir(root).iterdir() if p.name not in FILE_NAMES)


def test_good_files_land_verified_and_loadable(tmp_path, good_source):
    source, checksums = good_source
    root = tmp_path / "data"
    fetch_raw_files(root, [str(source)], checksums)
    assert sorted(p.name for p in raw_dir(root).iterdir()) == sorted(FILE_NAMES)
    splits = load_splits(root, "holdout", 100, 0, None)
    assert splits.sizes() == {"train": 500, "validation": 100, "test": 200}
    assert splits.train_x.shape[1:] == (1, 28, 28)
    assert -1.0 <= splits.train_x.min() and splits.train_x.max() <= 1.0


def test_corrupt_first_source_falls_through_to_a_good_second(tmp_path, good_source, caplog):
    source, checksums = good_source
    corrupt = tmp_path / "corrupt"
    shutil.copytree(source, corrupt)
    with gzip.open(corrupt / "train-labels-idx1-ubyte.gz", "wb") as handle:
        handle.write(b"\x00\x00\x08\x01" + b"\x00" * 20)
    root = tmp_path / "data"
    fetch_raw_files(root, [str(corrupt), str(source)], checksums)
    assert leftovers(root) == []
    assert "train-labels-idx1-ubyte" in caplog.text and "SHA-256" in caplog.text


def test_all_bad_sources_fail_with_what_was_tried_and_leave_nothing_partial(tmp_path, good_source):
    _, checksums = good_source
    wrong = {name: "0" * 64 for name in checksums}
    root = tmp_path / "data"
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as raised:
        fetch_raw_files(root, [str(missing), str(good_source[0])], wrong)
    message = str(raised.value)
    assert str(missing) in message and "SHA-256" in message
    assert "apt-get install -y dataset-fashion-mnist" in message and "data.sources" in message
    assert list(raw_dir(root).iterdir()) == []


def test_split_is_fixed_by_split_seed_and_test_mode_reuses_the_test_set(tmp_path, good_source):
    source, checksums = good_source
    root = tmp_path / "data"
    fetch_raw_files(root, [str(source)], checksums)
    a, b = load_splits(root, "holdout", 100, 0, 50), load_splits(root, "holdout", 100, 0, 50)
    c = load_splits(root, "holdout", 100, 1, 50)
    assert torch.equal(a.val_x, b.val_x) and torch.equal(a.train_x, b.train_x)
    assert not torch.equal(a.val_x, c.val_x)
    as_test = load_splits(root, "test", 100, 0, None)
    assert torch.equal(as_test.val_x, as_test.test_x) and as_test.sizes()["train"] == 600
