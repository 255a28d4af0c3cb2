import re
import subprocess
import sys

from conftest import REPO
from fake_metrics import fake_metrics, write_metrics
from synthetic import idx_bytes, synthetic_arrays


def run_script(name: str, *args: str, timeout: float) -> subprocess.CompletedProcess:
    """Run benchmarks/<name> as a user would; it must succeed."""
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / name), *args], capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stderr
    return result


def test_smoke_benchmark_prints_and_writes_a_ratio_for_each_measure_and_precision(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name, array in synthetic_arrays(n_train=400, n_test=200).items():
        (raw / name).write_bytes(idx_bytes(array))
    output = tmp_path / "results.md"
    args = ("--smoke", "--threads", "1", "--repeats", "1", "--data-root", str(tmp_path), "--output", str(output))
    result = run_script("benchmark.py", *args, timeout=600)
    written = output.read_text()
    for measure in ("(a) training epoch", "(b) evaluation pass", "(c) quick study"):
        for precision in ("fp32", "bf16"):
            line = next(line for line in result.stdout.splitlines() if line.startswith(measure) and precision in line)
            assert re.search(r"\s\d+\.\d\dx\s", line), line
            assert any(line.startswith(f"| {measure}") and precision in line for line in written.splitlines())
    assert "- CPU: " in written and "torch " in written and "- date: " in written
    for precision in ("fp32", "bf16"):
        fixed_cost = next(line for line in written.splitlines() if line.startswith("| (e)") and precision in line)
        reference_s, project_s = (float(cell) for cell in fixed_cost.split("|")[2:4])
        assert reference_s > 0 and project_s > 0, fixed_cost
        assert re.search(rf"beyond PyTorch is .*{precision} -?\d+\.\d\d s", written), written


def test_precision_parity_from_two_finished_studies_pairs_runs_by_seed(tmp_path):
    accuracy = {1: 0.90, 2: 0.91, 3: 0.92}
    for precision, shift in (("fp32", 0.0), ("bf16", 0.001)):
        runs = []
        for seed, base in accuracy.items():
            metrics = fake_metrics("he", "adam", seed, [0.85, base], test_accuracy=base + shift)
            runs.append({**metrics, "precision": precision})
        write_metrics(tmp_path / precision, runs)
    result = run_script(
        "equivalence.py",
        "--compare",
        "precision",
        "--from-runs",
        str(tmp_path / "fp32" / "results" / "runs"),
        str(tmp_path / "bf16" / "results" / "runs"),
        "--output",
        str(tmp_path / "parity.md"),
        timeout=120,
    )
    row = next(line for line in result.stdout.splitlines() if line.startswith("he + adam"))
    # +0.1 pp in every seed, against a seed spread of 1 pp: within the spread
    assert row.split()[3:8] == ["0.9100", "0.9110", "0.1000", "1.0000", "yes"], row
    # the same +0.1 pp three times: the exact sign-flip p is 2 / 2**3, so not detected with 3 pairs
    assert "+0.10 pp [0.10, 0.10], p = 0.25 (Holm 0.25): not detected" in row, row
    assert "pooled over 3 pairs, bf16 - fp32: +0.10 pp [0.10, 0.10], p = 0.25" in result.stdout
    assert "seeds [1, 2, 3]" in result.stdout
    written = (tmp_path / "parity.md").read_text()
    assert "| he + adam" in written and "pooled over 3 pairs" in written and "- CPU: " in written
