PYTHON ?= python3.11
# One virtualenv per interpreter: `make test PYTHON=python3.13` builds and uses .venv-python3.13.
VENV ?= $(if $(filter python3.11,$(PYTHON)),.venv,.venv-$(notdir $(PYTHON)))
# pyenv's shims run only the versions pyenv has selected: else take pyenv's own copy of $(PYTHON).
PYTHON_CMD := $(or $(shell $(PYTHON) -c "" >/dev/null 2>&1 && echo $(PYTHON) || \
	ls -d "$$(pyenv root 2>/dev/null)"/versions/$(PYTHON:python%=%).*/bin/$(PYTHON) 2>/dev/null | \
	sort -V | tail -n 1),$(PYTHON))
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench
RUNNERS_STAMP := $(VENV)/.installed-venv

.PHONY: demo demo-yaml demo-fan-out demo-runners test bench bench-compare chaos lint clean

$(BIN)/python:
	$(PYTHON_CMD) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24,<27"

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# dev includes uv, the venv extra: a dev install serves demo-runners too
$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@ $(STAMP) $(RUNNERS_STAMP)

$(RUNNERS_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[venv]"
	touch $@ $(STAMP)

# uvloop: the podium-uvloop rows; venv and dask: the Virtualenv and Dask runner rows.
$(BENCH_STAMP): pyproject.toml Makefile | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[uvloop,venv,dask]"
	touch $@ $(STAMP) $(RUNNERS_STAMP)

## Run the customer-analytics pipeline once on embedded defaults and print a summary.
demo: $(STAMP)
	$(BIN)/python -m examples.customer_analytics

## The same pipeline as a YAML DAG calling the Python functions (examples/customer_analytics_yaml/).
demo-yaml: $(STAMP)
	$(BIN)/python -m examples.customer_analytics_yaml

## Fan-out over the files of a day with task.map (examples/fan_out/).
demo-fan-out: $(STAMP)
	$(BIN)/python -m examples.fan_out

## Where tasks run: a CPU-bound step on Process(workers=2), a legacy one in a Virtualenv (examples/runners/).
demo-runners: $(RUNNERS_STAMP)
	$(BIN)/python -m examples.runners

## Run the whole test suite (installs Debian's chromium for the web UI tests if it is missing).
test: $(DEV_STAMP)
	bash tests/ensure_chromium.sh
	$(BIN)/python -m pytest -q

## Run the benchmark workloads (W1-W5) against Podium (asyncio's loop and uvloop) and the plain asyncio+sqlite3 floor,
## then the runners (threads, Process, Dask, Virtualenv) beside their floors; one results file.
bench: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.run

## The same workloads on Prefect, Dagster, DBOS and Airflow, each in its own virtualenv (slow: installs);
## and Podium's Dask runner vs Prefect's DaskTaskRunner on one LocalCluster.
bench-compare: $(DEV_STAMP)
	$(BIN)/python -m benchmarks.compare

## Kill -9 the engine 200 times under Kafka + timer + manual load and check every guarantee.
chaos: $(DEV_STAMP)
	$(BIN)/python -m tests.chaos.driver --kills 200

lint: $(DEV_STAMP)
	$(BIN)/ruff check engine sensors tests benchmarks examples
	$(BIN)/ruff format --check engine sensors tests benchmarks examples
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
