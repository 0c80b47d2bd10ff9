# The two commands of the README: `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

AIRFLOW_VENV := .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed-stamp

.PHONY: venv airflow-venv test lint demo bench sandbox clean

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

test: venv airflow-venv lint
	$(BIN)/python -m pytest

demo: venv
	bash scripts/demo.sh

bench: venv
	$(BIN)/python benchmarks/run.py

sandbox: venv
	$(BIN)/piriod-sandbox --port 8765 --seed 500

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) .meltano output .pytest_cache .ruff_cache
