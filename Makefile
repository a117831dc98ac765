# mlops_platform: `make demo` runs the lifecycle, `make test` runs the tests. Both install first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

# Everything the platform writes lives under MLOPS_HOME; the Dagster instance in DAGSTER_HOME.
export MLOPS_HOME ?= $(CURDIR)/.mlops
export DAGSTER_HOME ?= $(MLOPS_HOME)/dagster

# dg commands run with the project's virtual environment active, as dg expects.
DG := VIRTUAL_ENV=$(CURDIR)/$(VENV) PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dg

.PHONY: install demo test test-slow ui mlflow-ui serve deploy lint format validate benchmark benchmark-scale clean dagster-home

install: $(VENV)/.installed

# torch first and pinned (the CPU wheel), so no later step can pull a CUDA build; then the
# platform with every transitive version pinned in constraints.txt; dbt in its own venv.
$(VENV)/.installed: pyproject.toml constraints.txt requirements-dbt.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	$(PYTHON) -m venv $(VENV)/dbt
	$(VENV)/dbt/bin/pip install --quiet --upgrade pip
	$(VENV)/dbt/bin/pip install --quiet -r requirements-dbt.txt
	$(BIN)/pip check
	touch $@

dagster-home:
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

demo: install dagster-home
	$(BIN)/mlops demo

# The suite in two tiers: `test` (under 15 minutes on 2 cores) and `test-slow`, the end-to-end
# tests that run the demo, the CLIs and the UI in subprocesses. CI runs both.
test: install
	$(BIN)/pytest -m "not slow"

test-slow: install
	$(BIN)/pytest -m slow

# The Dagster UI on the instance `make demo` used (a bare `dg dev` gets a temporary instance).
ui: install dagster-home
	$(DG) dev -h 127.0.0.1 -p 3000

# The MLflow UI the Dagster UI links to (MLOPS_MLFLOW_UI_URL, http://127.0.0.1:5000 by default).
mlflow-ui: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(MLOPS_HOME)/mlflow/mlflow.db -h 127.0.0.1 -p 5000

serve: install
	$(BIN)/mlops serve --host 127.0.0.1 --port 8080 --workers 2

deploy: install dagster-home
	$(DG) launch --job deploy_model

validate: install dagster-home
	$(DG) check defs

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

benchmark: install dagster-home
	$(BIN)/python benchmarks/load_time.py
	$(BIN)/python benchmarks/serving.py

# The platform at 1 M and 10 M rows (benchmarks/scale.py; long on two cores), each in a fresh
# temporary data directory; results in benchmarks/results/scale.{json,md}. Smaller or other sizes:
#   make benchmark-scale ROWS=200000            (or ROWS=100000,1000000 DAYS=10 INCREMENT_ROWS=100000)
#   make benchmark-scale SCALE_ARGS="--epochs 5 --timeout 1800"
benchmark-scale: install
	$(BIN)/python benchmarks/scale.py $(if $(ROWS),--rows $(ROWS)) $(if $(DAYS),--days $(DAYS)) \
		$(if $(INCREMENT_ROWS),--increment-rows $(INCREMENT_ROWS)) $(SCALE_ARGS)

clean:
	rm -rf .mlops
