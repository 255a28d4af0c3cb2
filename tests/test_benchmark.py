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
    row = next(line for line in result.stdout.splitlines() if line.startswith("| he + adam"))
    # +0.1 pp in every seed: the two precisions' accuracies, the paired difference, and with 3 seeds the exact
    # sign-flip p is 2 / 2**3 at best, so nothing can be detected, and the page says why
    assert [cell.strip() for cell in row.split("|")[2:7]] == ["3", "91.00%", "91.10%", "+0.10 pp [no bound]", "0.25"]
    assert "not detected: 3 seeds cannot reach p <= 0.05" in row, row
    assert "- **What differs**: precision used (`fp32` → `bf16`)." in result.stdout
    assert "pooled bf16 - fp32 +0.10 pp [no bound] over 3 seeds, p = 0.25: **not detected**" in result.stdout
    written = (tmp_path / "parity.md").read_text()
    assert written.startswith("# bf16 against fp32") and "| he + adam" in written and "- CPU: " in written
    assert "![B - A per combination and pooled](parity.png)" in written and (tmp_path / "parity.png").is_file()
