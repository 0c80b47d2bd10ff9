# The two commands of the README: `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: venv test lint demo bench sandbox clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,meltano]'
	touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check .

test: venv lint
	$(BIN)/python -m pytest

demo: venv
	bash scripts/demo.sh

bench: venv
	$(BIN)/python benchmarks/run.py

sandbox: venv
	$(BIN)/piriod-sandbox --port 8765 --seed 500

clean:
	rm -rf $(VENV) .meltano output .pytest_cache .ruff_cache
