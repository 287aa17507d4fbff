# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv and install FedShift into it first.
# TORCH is overridable, e.g. make demo TORCH="torch==2.5.1 --index-url https://download.pytorch.org/whl/cu124"
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q $(TORCH)
	$(VENV)/bin/pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/fedshift simulate

test: $(STAMP)
	$(VENV)/bin/pytest -q

# everyday lane: the suite without the slow end-to-end tests (CI runs `make test`, all of it)
test-fast: $(STAMP)
	$(VENV)/bin/pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

.PHONY: install demo test test-fast lint
