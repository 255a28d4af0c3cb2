#!/usr/bin/env bash
# GPU check (issue 12): on a machine with a CUDA GPU, the benchmark and the quick study on CUDA, in
# fp32 and in bf16, in under 10 minutes; the results go to ONE file, <dir>/gpu-check.md (a log of
# everything printed lies beside it, gpu-check.log). Never needed for the tests to pass.
#
#   benchmarks/gpu-check.sh [DIR]        DIR: where to write (default: $OUT if set, else results/gpu-check)
#
# Environment:
#   PYTHON     a Python with PyTorch (CUDA build), numpy, pyyaml, tabulate and, for the quick study,
#              snakemake (default: .venv/bin/python if present, else python3)
#   DATA_DIR   a directory of the four FashionMNIST *-ubyte.gz files (default: .device/fashion-mnist,
#              else /usr/share/datasets/fashion-mnist, else the config's data.sources); the raw files
#              land in data/FashionMNIST/raw, verified against the pinned checksums
#   THREADS    CPU threads per contender and Snakemake's --cores (default: all cores)
#   DEVICE     cuda (default); DEVICE=cpu SMOKE=1 checks this script itself on a machine without a GPU
#   SMOKE      1: the benchmark's --smoke sizes (seconds; checks the script, measures nothing)
#
# On a machine that cannot download anything, bring what it lacks inside the repository (both paths
# are git-ignored): the data as .device/fashion-mnist/*.gz, and missing Python packages as wheels in
# .whl/, e.g. `python -m pip download -d .whl snakemake==9.27.1 tabulate` (this script installs them
# with --no-index when `import snakemake` fails there).
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=${1:-${OUT:-results/gpu-check}}
mkdir -p "$DIR"
RESULT="$DIR/gpu-check.md"
LOG="$DIR/gpu-check.log"
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
THREADS=${THREADS:-$(nproc)}
DEVICE=${DEVICE:-cuda}
SIZE_ARGS=()
[ "${SMOKE:-0}" = 1 ] && SIZE_ARGS=(--smoke --repeats 1)
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
SECONDS=0
exec > >(tee "$LOG") 2>&1

note() { echo "$*" | tee -a "$RESULT"; }

{
    echo "# GPU check"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "- GPU: $(nvidia-smi -L 2>/dev/null | head -n 1 || echo 'nvidia-smi not found')"
    echo "- $("$PYTHON" -c 'import torch; print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, sees a GPU: {torch.cuda.is_available()}")')"
    echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $(nproc) cores; $THREADS threads per contender"
    echo
} >"$RESULT"
if [ "$DEVICE" = cuda ]; then
    "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else "no CUDA GPU visible to PyTorch")'
fi

# The quick study runs through Snakemake: install it from carried wheels where it is missing.
if ! "$PYTHON" -c 'import snakemake' 2>/dev/null && [ -d .whl ]; then
    "$PYTHON" -m pip install --quiet --no-index --find-links .whl snakemake tabulate
fi
STUDY_ARGS=()
if ! "$PYTHON" -c 'import snakemake' 2>/dev/null; then
    STUDY_ARGS=(--skip-study)
    note "- quick study SKIPPED: snakemake is not installed for $PYTHON (carry wheels in .whl/, see the script's header)"
fi

# The data: verified raw files in data/FashionMNIST/raw, from the first source that has them.
"$PYTHON" - "${DATA_DIR:-.device/fashion-mnist}" <<'EOF'
import sys
from pathlib import Path

import yaml

from fmnist_initopt.data import fetch_raw_files

config = yaml.safe_load(Path("config/config.yaml").read_text())
schema = yaml.safe_load(Path("workflow/schemas/config.schema.yaml").read_text())
pins = schema["properties"]["data"]["properties"]["sha256"]["default"]
sources = [source for source in (sys.argv[1], *config["data"]["sources"]) if source]
sources = [str(Path(s).resolve()) if not s.startswith(("http://", "https://")) else s for s in sources]
fetch_raw_files("data", sources, pins, timeout=10)
EOF

# The benchmark: (a) epoch and (b) evaluation of the project on CUDA against the brief's loop on the
# CPU, best of 3, and (c) the quick study through Snakemake on CUDA; fp32 and bf16 each.
BENCHMARK_MD="$DIR/.benchmark.md"
timeout 480 "$PYTHON" benchmarks/benchmark.py --device "$DEVICE" --threads "$THREADS" --repeats 3 --data-root data \
    --output "$BENCHMARK_MD" --json "$DIR/.benchmark.json" "${STUDY_ARGS[@]}" "${SIZE_ARGS[@]}"
tail -n +3 "$BENCHMARK_MD" >>"$RESULT"

# Every quick-study run's device, precision, test accuracy and median step time, from its metrics.json.
"$PYTHON" - "$DIR/.benchmark.json" >>"$RESULT" <<'EOF'
import json
import sys

from tabulate import tabulate

measured = json.load(open(sys.argv[1]))
rows = [
    [kind, contender, result["device"], result["precision"], run_id, run["test_accuracy"], 1000 * run["median_step_seconds"]]
    for kind, contenders in measured["studies"].items()
    for contender, result in contenders.items()
    if contender.startswith("project")
    for run_id, run in result["runs"].items()
]
if rows:
    headers = ["study", "contender", "device", "precision", "run", "test accuracy", "median step ms"]
    print("\n## Quick-study runs\n\n" + tabulate(rows, headers=headers, tablefmt="github", floatfmt=".4f"))
EOF
rm -f "$BENCHMARK_MD" "$DIR/.benchmark.json"
note ""
note "GPU check finished in $SECONDS s."
