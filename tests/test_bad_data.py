"""Broken downloads: each is reported with the file and the source, the next source is tried,
verified data already in data/ is never touched, and no partial file remains."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import shutil
import threading
from pathlib import Path

import pytest
import yaml
from synthetic import write_synthetic_source

from fmnist_initopt.data import FILE_NAMES, DataError, fetch_raw_files, raw_dir, sha256_of

BAD_FILE = "train-labels-idx1-ubyte"  # the one file each broken directory source gets wrong
TIMEOUT = 0.3


class LocalMirror:
    """An HTTP server on 127.0.0.1: /good/ serves the good files, /missing/ answers 404, /hang/ never answers."""

    def __init__(self, good_dir: Path):
        released = threading.Event()
        self.released = released

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                kind, _, name = self.path.strip("/").partition("/")
                if kind == "hang":
                    released.wait(30)
                    return
                path = good_dir / name
                if kind != "good" or not path.is_file():
                    self.send_error(404)
                    return
                body = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, kind: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{kind}"

    def close(self):
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def good(tmp_path):
    directory = tmp_path / "good"
    return directory, write_synthetic_source(directory)


@pytest.fixture
def mirror(good):
    server = LocalMirror(good[0])
    yield server
    server.close()


def copy_with(good_dir: Path, target: Path, payload_gz: bytes | None) -> Path:
    """A copy of the good source whose BAD_FILE has the given .gz bytes (None: the file is missing)."""
    shutil.copytree(good_dir, target)
    if payload_gz is None:
        (target / f"{BAD_FILE}.gz").unlink()
    else:
        (target / f"{BAD_FILE}.gz").write_bytes(payload_gz)
    return target


def gz(payload: bytes) -> bytes:
    return gzip.compress(payload, mtime=0)


def good_payload(good_dir: Path) -> bytes:
    return gzip.decompress((good_dir / f"{BAD_FILE}.gz").read_bytes())


def wrong_magic(good_dir: Path) -> bytes:
    payload = good_payload(good_dir)
    return b"\x00\x00\x08\x03" + payload[4:]  # labels announced as 3-d images


def other_dataset(tmp_path: Path) -> bytes:
    other = tmp_path / "other"
    write_synthetic_source(other, seed=1)
    return (other / f"{BAD_FILE}.gz").read_bytes()


# case: (how to make the bad directory source from tmp_path and the good directory, the problem reported)
CASES = {
    "truncated gzip": (
        lambda t, g: copy_with(g, t / "bad", (g / f"{BAD_FILE}.gz").read_bytes()[:-40]),
        "not a complete gzip file",
    ),
    "wrong IDX magic, checksum matching": (
        lambda t, g: copy_with(g, t / "bad", gz(wrong_magic(g))),
        "magic number 0x00000803, expected 0x00000801",
    ),
    "right format, wrong checksum": (lambda t, g: copy_with(g, t / "bad", other_dataset(t)), "SHA-256"),
    "empty file": (lambda t, g: copy_with(g, t / "bad", b""), "empty file"),
    "empty gzip": (lambda t, g: copy_with(g, t / "bad", gz(b"")), "decompressed to 0 bytes"),
    "directory missing a file": (lambda t, g: copy_with(g, t / "bad", None), "no file"),
    "directory that does not exist": (lambda t, g: t / "nowhere", "no such directory"),
    "another scheme is never opened": (lambda t, g: "file:///etc", "no such directory"),
}
MIRROR_CASES = {"mirror answering 404": ("missing", "HTTP 404"), "mirror that hangs": ("hang", "timed out")}


def bad_source(case: str, tmp_path: Path, good_dir: Path, mirror: LocalMirror) -> tuple[str, str]:
    if case in MIRROR_CASES:
        kind, problem = MIRROR_CASES[case]
        return mirror.url(kind), problem
    make, problem = CASES[case]
    return str(make(tmp_path, good_dir)), problem


def state(directory: Path) -> dict[str, tuple]:
    """Everything in a directory, with what would show a rewrite: inode, mtime and content hash."""
    return {
        p.name: (p.stat().st_ino, p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in directory.iterdir()
    }


@pytest.mark.parametrize("case", [*CASES, *MIRROR_CASES])
def test_bad_source_is_reported_keeps_verified_data_and_leaves_nothing_partial(case, tmp_path, good, mirror, caplog):
    good_dir, checksums = good
    source, problem = bad_source(case, tmp_path, good_dir, mirror)
    if case == "wrong IDX magic, checksum matching":  # the pin matches the bad bytes: only the IDX check can object
        checksums = {**checksums, BAD_FILE: hashlib.sha256(wrong_magic(good_dir)).hexdigest()}
    root = tmp_path / "data"
    others = [name for name in FILE_NAMES if name != BAD_FILE]
    # data/ already holds verified copies of the other three files
    raw_dir(root).mkdir(parents=True)
    for name in others:
        (raw_dir(root) / name).write_bytes(gzip.decompress((good_dir / f"{name}.gz").read_bytes()))
    before = state(raw_dir(root))

    with pytest.raises(DataError) as raised:
        fetch_raw_files(root, [source], checksums, timeout=TIMEOUT)
    message = str(raised.value)
    assert f"{source}: {BAD_FILE}: " in message and problem in message, message
    assert state(raw_dir(root)) == before  # nothing added, nothing rewritten, no temp file left

    if case == "wrong IDX magic, checksum matching":
        return  # no good source can match a pin made for the bad bytes
    fetch_raw_files(root, [source, str(good_dir)], checksums, timeout=TIMEOUT)
    assert f"{source}: {BAD_FILE}: " in caplog.text  # the bad source was reported, then the next one used
    after = state(raw_dir(root))
    assert {name: after[name] for name in others} == before
    assert sorted(after) == sorted(FILE_NAMES)
    assert sha256_of(raw_dir(root) / BAD_FILE) == checksums[BAD_FILE]


def test_a_good_mirror_after_a_hanging_and_a_404_one_delivers_every_file(tmp_path, good, mirror):
    good_dir, checksums = good
    root = tmp_path / "data"
    fetch_raw_files(root, [mirror.url("hang"), mirror.url("missing"), mirror.url("good")], checksums, timeout=TIMEOUT)
    assert all(sha256_of(raw_dir(root) / name) == checksums[name] for name in FILE_NAMES)
    assert sorted(p.name for p in raw_dir(root).iterdir()) == sorted(FILE_NAMES)


def test_downloads_are_checksum_verified_too(tmp_path, good, mirror):
    _, checksums = good
    root = tmp_path / "data"
    with pytest.raises(DataError, match=f"{mirror.url('good')}: {FILE_NAMES[0]}: SHA-256"):
        fetch_raw_files(root, [mirror.url("good")], {**checksums, FILE_NAMES[0]: "0" * 64}, timeout=TIMEOUT)
    assert list(raw_dir(root).iterdir()) == []


def test_verified_data_is_never_replaced_even_when_every_source_is_bad(tmp_path, good):
    good_dir, checksums = good
    root = tmp_path / "data"
    fetch_raw_files(root, [str(good_dir)], checksums)
    before = state(raw_dir(root))
    broken = copy_with(good_dir, tmp_path / "bad", b"")
    fetch_raw_files(root, [str(broken), str(tmp_path / "nowhere")], checksums)
    assert state(raw_dir(root)) == before


def test_a_bad_source_stops_snakemake_naming_file_and_source_and_keeps_the_verified_files(study, tmp_path, mirror):
    study.snakemake("--cores", "1", "--until", "prepare_data")
    raw = study.root / "data" / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(FILE_NAMES)
    (raw / BAD_FILE).unlink()
    shutil.rmtree(study.root / "data" / "prepared")
    shutil.rmtree(study.results / "data")  # the study's data record: the study starts afresh
    before = state(raw)
    broken = copy_with(study.source, tmp_path / "bad", None)
    config = study.config()
    config["data"].update(sources=[str(broken), mirror.url("missing")], timeout_seconds=TIMEOUT)
    study.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = study.snakemake("--cores", "1", check=False)
    assert result.returncode != 0
    log = (study.results / "logs" / "prepare_data.log").read_text()
    assert f"{broken}: {BAD_FILE}: no file" in log
    assert f"{mirror.url('missing')}: {BAD_FILE}: HTTP 404" in log
    assert "apt-get install -y dataset-fashion-mnist" in log
    assert state(raw) == before  # the three verified files untouched, no partial fourth
    assert not (study.results / "runs").exists()
