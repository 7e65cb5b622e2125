# ray_nas: `make quickstart` runs the demo sweep; `make test` runs the test suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv test test-fast quickstart docs docs-serve lint format clean

$(BIN)/ray-nas: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

venv: $(BIN)/ray-nas

test: venv
	RAY_AUTH_MODE=disabled $(BIN)/python -m pytest -q

# the inner loop: no test marked slow (real searches, subprocesses, servers) or ray
test-fast: venv
	RAY_AUTH_MODE=disabled $(BIN)/python -m pytest -q -m "not slow and not ray"

# RAY_AUTH_MODE=disabled: a local Ray leaves $HOME/.ray alone (the tool sets it too for a local
# run; here it also covers Ray started by anything else the target runs)
quickstart: venv
	RAY_AUTH_MODE=disabled $(BIN)/ray-nas sweep jobs/quickstart.yaml --report

# the docs site (docs/, mkdocs.yml) into site/; the reference pages are generated from the code
docs: venv
	$(BIN)/python -m mkdocs build --strict

docs-serve: venv
	$(BIN)/python -m mkdocs serve

lint: venv
	$(BIN)/ruff check ray_nas tests benchmarks jobs
	$(BIN)/ruff format --check ray_nas tests benchmarks jobs

format: venv
	$(BIN)/ruff format ray_nas tests benchmarks jobs
	$(BIN)/ruff check --fix ray_nas tests benchmarks jobs

clean:
	rm -rf runs mlflow.db .pytest_cache site
