# Two commands set up everything on a fresh machine (each creates or reuses .venv):
#   make run    the main job on the embedded default model
#   make test   the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is pinned to a CPU build; an unpinned torch would pull a CUDA build of several GB
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: run test bench lint notebooks clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/rfcheck compare alexnet

test: $(STAMP)
	$(PY) -m pytest -q -n 2 -p no:cacheprovider

bench: $(STAMP)
	$(PY) benchmarks/run.py

lint: $(STAMP)
	$(VENV)/bin/ruff check rfarith rfnumeric crosscheck tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
