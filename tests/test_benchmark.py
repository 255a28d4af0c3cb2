import re
import subprocess
import sys

from conftest import REPO
from synthetic import idx_bytes, synthetic_arrays


def test_smoke_benchmark_prints_a_ratio_for_each_measure(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name, array in synthetic_arrays(n_train=400, n_test=200).items():
        (raw / name).write_bytes(idx_bytes(array))
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "benchmark.py"),
            "--smoke",
            "--threads",
            "1",
            "--repeats",
            "1",
            "--data-root",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    for measure in ("(a) training epoch", "(b) evaluation pass", "(c) quick study"):
        line = next(line for line in result.stdout.splitlines() if line.startswith(measure))
        assert re.search(r"\s\d+\.\d\dx\s", line), line
