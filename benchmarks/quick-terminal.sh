#!/usr/bin/env bash
# What `make quick` shows in the terminal while it trains, kept as docs/make-quick-terminal.txt:
# the quick study from scratch (its results/quick/ is moved aside and put back), then the terminal's
# epoch lines and Snakemake's step counts, without the job blocks (they name machine paths such as tmpdir).
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/make-quick-terminal.txt
aside=""
if [ -e results/quick ]; then aside=$(mktemp -d results/.quick-aside.XXXX); mv results/quick "$aside/"; fi
restore() { if [ -n "$aside" ]; then rm -rf results/quick; mv "$aside/quick" results/quick; rmdir "$aside"; fi; }
trap restore EXIT
capture=$(mktemp)
start=$(date +%s)
make quick >"$capture" 2>&1
seconds=$(( $(date +%s) - start ))
{
  echo "# make quick, from an empty results/quick/ ($(date -u +%Y-%m-%d), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, ${seconds} s in all)"
  echo "# the terminal's epoch lines and step counts, in order (Snakemake's job blocks left out)"
  grep -E 'fmnist_initopt.progress: | of [0-9]+ steps \(' "$capture" | sed -E 's/^[0-9-]+ ([0-9:]+),[0-9]+ INFO fmnist_initopt.progress: /\1 /'
} >"$out"
rm -f "$capture"
echo "wrote $out"
