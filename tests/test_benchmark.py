import re
import subprocess
import sys

from conftest import REPO
from synthetic import idx_bytes, synthetic_arrays


def test_smoke_benchmark_prints_and_writes_a_ratio_for_each_measure_and_precision(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name, array in synthetic_arrays(n_train=400, n_test=200).items():
        (raw / name).write_bytes(idx_bytes(array))
    output = tmp_path / "results.md"
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
            "--output",
            str(output),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    written = output.read_text()
    for measure in ("(a) training epoch", "(b) evaluation pass", "(c) quick study"):
        for precision in ("fp32", "bf16"):
            line = next(line for line in result.stdout.splitlines() if line.startswith(measure) and precision in line)
            assert re.search(r"\s\d+\.\d\dx\s", line), line
            assert any(line.startswith(f"| {measure}") and precision in line for line in written.splitlines())
    assert "- CPU: " in written and "torch " in written and "- date: " in written
