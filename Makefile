# The commands of the README: `make demo`, `make check` (the inner loop) and `make test`
# (everything). They build .venv themselves.
PYTHON ?= python3
# The supported Pythons besides .venv's, on which `make check-pythons` runs the in-process tests.
PYTHONS ?= 3.10 3.13
# Workers for the process tests in `make test` (pytest-xdist); 0 runs them in this process.
WORKERS ?= 2
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

AIRFLOW_VENV := .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed-stamp

.PHONY: venv airflow-venv check check-pythons test lint demo bench sandbox clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,meltano]'
	touch $(STAMP)

venv: $(STAMP)

# Airflow in a virtualenv of its own (its pins conflict with Meltano's), for tests/test_airflow.py.
$(AIRFLOW_STAMP): orchestrate/airflow/requirements.txt orchestrate/airflow/constraints.txt
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	echo '*' > $(AIRFLOW_VENV)/.gitignore
	$(AIRFLOW_VENV)/bin/pip install --quiet --upgrade pip
	$(AIRFLOW_VENV)/bin/pip install --quiet -r orchestrate/airflow/requirements.txt \
		-c orchestrate/airflow/constraints.txt
	touch $(AIRFLOW_STAMP)

airflow-venv: $(AIRFLOW_STAMP)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

# Lint, types and every test that starts no process (tests/conftest.py marks the others).
check: lint
	$(BIN)/python -m pytest -q -m "not process"

check-pythons:
	bash scripts/check_pythons.sh $(PYTHONS)

# Everything: the in-process tests here and on $(PYTHONS), then every test, slowest listed.
# Meltano's tests stay on one worker (they share one `meltano install`: xdist_group).
test: check airflow-venv
	$(MAKE) check-pythons
	$(BIN)/python -m pytest -m process --durations=25 -n $(WORKERS) --dist loadgroup

demo: venv
	bash scripts/demo.sh

bench: venv
	$(BIN)/python benchmarks/run.py

sandbox: venv
	$(BIN)/piriod-sandbox --port 8765 --seed 500

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) .venv-py3* .meltano output .pytest_cache .ruff_cache \
		.mypy_cache
