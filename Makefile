# Two entry points: `make study` runs the full study, `make test` runs lint and the test suite.
# Both create .venv, install requirements.txt and this package (editable) on first use.
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all

.PHONY: setup data-package study quick report test lint

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

# Debian ships the real FashionMNIST; elsewhere the workflow downloads it from the mirrors.
data-package:
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null \
		|| echo "dataset-fashion-mnist not installed: the workflow will try the download mirrors"; \
	fi

study: setup data-package
	$(BIN)/snakemake --cores $(CORES)

quick: setup data-package
	$(BIN)/snakemake --cores $(CORES) --configfile config/quick.yaml

# The study (whatever is missing of it), then the self-contained HTML report.
report: setup data-package
	$(BIN)/snakemake --cores $(CORES) --report results/main/report.html --report-after-run

# Lint and format checks: Python (ruff), Snakemake files (snakefmt), the workflow (snakemake --lint).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile workflow
	@out=$$($(BIN)/snakemake --lint 2>&1); echo "$$out" | tail -n 1; \
		echo "$$out" | grep -q "Congratulations" || { echo "$$out"; exit 1; }

# The optional MLflow extra: its export test reads a store back through MLflow (under CI=true it must run).
$(VENV)/.mlflow: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[mlflow]'
	touch $@

test: lint data-package $(VENV)/.mlflow
	$(BIN)/python -m pytest tests
