# Everything a fresh machine needs: `make demo` and `make test` each install what they use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FASHION_MNIST := /usr/share/datasets/fashion-mnist
PYTEST_ARGS ?=

.PHONY: install demo test test-fast lint docs bench bench-gpu fashion-mnist chromium slurm clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

# Fashion-MNIST from Debian (package dataset-fashion-mnist) when we are root and it is missing;
# otherwise `classreg demo` explains what to do.
fashion-mnist:
	@if [ ! -d $(FASHION_MNIST) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing dataset-fashion-mnist"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	fi

# Debian's chromium renders the HTML report in a test (tests/test_report_cli.py), when we are root and it is missing.
chromium:
	@if ! command -v chromium >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	fi

# Debian's slurm-wlm (slurmctld, slurmd, slurm-client, munge) for the tests that run a real local
# SLURM cluster (slurm/start_local_cluster.sh), when we are root and it is missing.
slurm:
	@if ! command -v slurmctld >/dev/null && [ ! -x /usr/sbin/slurmctld ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing slurm-wlm"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm; \
	fi

demo: install fashion-mnist
	$(BIN)/classreg demo

test: install fashion-mnist chromium slurm lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Style (ruff) and the import layers (import-linter contracts in setup.cfg).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

test-fast: install
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# docs/config.md is generated from the config dataclasses (tests/test_config_reference.py checks it).
docs: install
	$(BIN)/python -m launch.config_reference > docs/config.md

bench: install
	PYTHONPATH=. $(BIN)/python bench/input_pipeline.py

# On a CUDA machine: the ResNet-50 throughput benchmark (bench/gpu_run.sh also runs `pytest -m gpu`).
bench-gpu: install
	PYTHONPATH=. $(BIN)/python bench/gpu_throughput.py --out gpu_throughput.json

clean:
	rm -rf demo .pytest_cache
