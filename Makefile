# Two commands for a fresh machine: `make demo` (build the demo dataset) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: venv demo test bench clean
.DEFAULT_GOAL := demo

venv: $(STAMP)
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: venv
	$(PY) -m acd.cli build --recipe demo --out out/demo

test: venv
	bash scripts/test-deps.sh
	$(PY) -m pytest -q -rs

clean:
	rm -rf out runs

# Each area keeps its own targets in mk/ (labelstudio, train, bench, prefect up/down ...).
-include mk/*.mk
