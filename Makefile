# Everything a fresh machine needs: `make demo` and `make test` each install what they use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FASHION_MNIST := /usr/share/datasets/fashion-mnist
PYTEST_ARGS ?=

.PHONY: install lock demo test test-fast lint docs bench bench-gpu fashion-mnist chromium slurm clean

install: $(STAMP)

# The lock (requirements.txt: every package, transitive ones included, at one version), then imagenet-x without
# its dependencies, then classreg itself, editable. Its dependencies are all in the lock already: --no-deps only
# spares pip a second resolution, and --no-build-isolation building it with the lock's setuptools.
$(STAMP): requirements.txt requirements-nodeps.txt setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	touch $@

# Regenerate requirements.txt from the ranges in setup.cfg (install_requires and the dali-cuda13 and test extras,
# so that CI runs the DALI tests) and requirements-pins.in, with pip-tools in its own venv. Versions already in
# requirements.txt are kept; move one with `make lock LOCK_ARGS="--upgrade-package NAME"`.
LOCK_ARGS ?=
lock:
	test -x .venv-lock/bin/pip-compile || ($(PYTHON) -m venv .venv-lock && .venv-lock/bin/pip install --quiet pip-tools==7.6.2)
	CUSTOM_COMPILE_COMMAND="make lock" .venv-lock/bin/pip-compile --quiet --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-find-links --extra=dali-cuda13 --extra=test $(LOCK_ARGS) \
		--output-file=requirements.txt setup.cfg requirements-pins.in

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
