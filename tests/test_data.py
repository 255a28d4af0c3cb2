import gzip
import json
import shutil

import numpy as np
import pytest
import torch
from synthetic import synthetic_arrays, write_synthetic_source

from fmnist_initopt.data import (
    FILE_NAMES,
    PREPARED_MANIFEST,
    DataError,
    ensure_prepared,
    fetch_raw_files,
    load_splits,
    normalise,
    prepared_file,
    raw_dir,
    sha256_of,
)


@pytest.fixture
def good_source(tmp_path):
    directory = tmp_path / "good"
    return directory, write_synthetic_source(directory)


def fetched_and_prepared(root, source, checksums):
    return ensure_prepared(root, checksums, [str(source)])


def leftovers(root):
    """Anything in the data directory that is not one of the four final files."""
    return sorted(p.name for p in raw_dir(root).iterdir() if p.name not in FILE_NAMES)


def test_good_files_land_verified_and_loadable(tmp_path, good_source):
    source, checksums = good_source
    root = tmp_path / "data"
    prepared = fetched_and_prepared(root, source, checksums)
    assert sorted(p.name for p in raw_dir(root).iterdir()) == sorted(FILE_NAMES)
    splits = load_splits(prepared, "holdout", 100, 0, None, pinned_sha256=checksums)
    assert splits.sizes() == {"train": 500, "validation": 100, "test": 200}
    assert splits.train_x.shape[1:] == (1, 28, 28) and splits.train_x.dtype == torch.uint8
    images = normalise(splits.train_x)
    assert images.dtype == torch.float32 and -1.0 <= images.min() and images.max() <= 1.0


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
    prepared = fetched_and_prepared(root, source, checksums)
    a, b = load_splits(prepared, "holdout", 100, 0, 50), load_splits(prepared, "holdout", 100, 0, 50)
    c = load_splits(prepared, "holdout", 100, 1, 50)
    assert torch.equal(a.val_x, b.val_x) and torch.equal(a.train_x, b.train_x)
    assert not torch.equal(a.val_x, c.val_x)
    as_test = load_splits(prepared, "test", 100, 0, None)
    assert torch.equal(as_test.val_x, as_test.test_x) and as_test.sizes()["train"] == 600


def test_prepared_arrays_hold_the_raw_files_and_record_their_checksums(tmp_path, good_source):
    source, checksums = good_source
    prepared = fetched_and_prepared(tmp_path / "data", source, checksums)
    manifest = json.loads((prepared / PREPARED_MANIFEST).read_text())
    for name, expected in synthetic_arrays(n_train=600, n_test=200).items():
        array = np.load(prepared / prepared_file(name))
        assert array.dtype == np.uint8 and np.array_equal(array, expected), name
        entry = manifest["files"][name]
        assert entry["source_sha256"] == checksums[name]
        assert entry["sha256"] == sha256_of(prepared / prepared_file(name))
    splits = load_splits(prepared, "test", 100, 0, None)
    labels = synthetic_arrays(n_train=600, n_test=200)["t10k-labels-idx1-ubyte"]
    assert splits.test_y.dtype == torch.int64 and splits.test_y.tolist() == labels.tolist()


def test_a_prepared_array_changed_after_it_was_written_is_refused_naming_it_and_the_fix(tmp_path, good_source):
    source, checksums = good_source
    prepared = fetched_and_prepared(tmp_path / "data", source, checksums)
    tampered = prepared / prepared_file("train-images-idx3-ubyte")
    content = bytearray(tampered.read_bytes())
    content[-1] ^= 0xFF  # one pixel of the last image: same size, same header
    tampered.write_bytes(bytes(content))
    with pytest.raises(DataError) as raised:
        load_splits(prepared, "holdout", 100, 0, None)
    message = str(raised.value)
    assert str(tampered) in message and "changed after it was written" in message
    assert f"delete {prepared}" in message and "no finished run is retrained" in message


def test_prepared_arrays_of_other_raw_files_than_the_pinned_ones_are_refused(tmp_path, good_source):
    source, checksums = good_source
    prepared = fetched_and_prepared(tmp_path / "data", source, checksums)
    repinned = {**checksums, "t10k-labels-idx1-ubyte": "0" * 64}
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte with SHA-256 .* but data.sha256 pins 0{64}") as raised:
        load_splits(prepared, "holdout", 100, 0, None, pinned_sha256=repinned)
    assert f"delete {raw_dir(tmp_path / 'data')} and {prepared}" in str(raised.value)


def test_the_prepared_cache_is_addressed_by_the_pinned_checksums_and_redone_when_deleted(tmp_path, good_source):
    source, checksums = good_source
    root = tmp_path / "data"
    prepared = fetched_and_prepared(root, source, checksums)
    assert prepared.parent == root / "prepared" and len(prepared.name) == 16
    first = load_splits(prepared, "holdout", 100, 0, None, pinned_sha256=checksums)
    # the documented fix: delete the data; the next call fetches and decodes the same bytes again
    shutil.rmtree(root)
    again = ensure_prepared(root, checksums, [str(source)])
    assert again == prepared
    second = load_splits(again, "holdout", 100, 0, None, pinned_sha256=checksums)
    assert torch.equal(first.train_x, second.train_x) and torch.equal(first.test_y, second.test_y)
    # arrays whose manifest was deleted (never left by a writer, who renames a complete directory) are redone
    (prepared / PREPARED_MANIFEST).unlink()
    assert ensure_prepared(root, checksums, []) == prepared and (prepared / PREPARED_MANIFEST).is_file()
    assert [p.name for p in (root / "prepared").iterdir()] == [prepared.name], "a staging directory was left"


def test_other_pins_are_another_cache_fetched_from_the_sources(tmp_path, good_source):
    source, checksums = good_source
    root = tmp_path / "data"
    first = fetched_and_prepared(root, source, checksums)
    other_source = tmp_path / "other"
    other_checksums = write_synthetic_source(other_source, seed=1)
    other = ensure_prepared(root, other_checksums, [str(other_source)])
    assert other != first and (first / PREPARED_MANIFEST).is_file()
    assert load_splits(other, "test", 100, 0, None, pinned_sha256=other_checksums).sizes()["train"] == 600
    assert {name: sha256_of(raw_dir(root) / name) for name in FILE_NAMES} == other_checksums


def test_the_cache_refuses_to_decode_raw_files_other_than_the_pinned_ones(tmp_path, good_source):
    source, checksums = good_source
    root = tmp_path / "data"
    repinned = {**checksums, "train-labels-idx1-ubyte": "1" * 64}
    with pytest.raises(DataError, match="could not obtain a verified copy of train-labels-idx1-ubyte"):
        ensure_prepared(root, repinned, [str(source)])
    assert not (root / "prepared").exists(), "nothing may be cached for data that is not the pinned data"
