# Two commands set up everything on a fresh machine (each creates or reuses .venv):
#   make run    the main job on the embedded default model
#   make test   the whole test suite
# Optional: make zoo-venv   a second environment, .venv-zoo, with torchvision and timm (~6 GB)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is pinned to a CPU build; an unpinned torch would pull a CUDA build of several GB
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed
# torchvision / timm models (rfcheck report torchvision:resnet50) live in an environment of their
# own: the only torchvision that imports here (0.29) needs torch 2.14.1, whose PyPI wheels bring
# CUDA (about 6 GB in all); .venv keeps its CPU torch.
ZOO_VENV ?= .venv-zoo
ZOO_PACKAGES ?= torch==2.14.1 torchvision==0.29.1 timm
ZOO_STAMP := $(ZOO_VENV)/.installed

.PHONY: run test bench lint notebooks clean zoo-venv census

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

$(ZOO_STAMP): pyproject.toml
	$(PYTHON) -m venv $(ZOO_VENV)
	$(ZOO_VENV)/bin/python -m pip install --quiet $(ZOO_PACKAGES)
	$(ZOO_VENV)/bin/python -m pip install --quiet -e ".[test]"
	touch $(ZOO_STAMP)

zoo-venv: $(ZOO_STAMP)
	@echo "$(ZOO_VENV) is ready: $(ZOO_VENV)/bin/rfcheck report torchvision:resnet50"

# coverage census over torchvision and timm (1-2 hours on two cores; resumable, its cache is
# out/census-cache.jsonl): writes docs/coverage.md. Never part of make test.
CENSUS_ARGS ?=
census: $(ZOO_STAMP)
	$(ZOO_VENV)/bin/python benchmarks/census.py $(CENSUS_ARGS)

run: $(STAMP)
	$(VENV)/bin/rfcheck compare alexnet

test: $(STAMP)
	$(PY) -m pytest -q -n 2 -p no:cacheprovider

bench: $(STAMP)
	$(PY) benchmarks/run.py --write docs/performance.md

lint: $(STAMP)
	$(VENV)/bin/ruff check rfarith rfnumeric crosscheck tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
