# Generation throughput benchmark (issue 3): our openai backend vs the ideal and vs distilabel, against the
# local OpenAI-compatible test server. distilabel lives in its own venv so its pins never touch .venv.
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed-stamp
DISTILABEL_VERSION ?= 1.5.3
BENCH_GEN_REQUESTS ?= 4000

.PHONY: bench-generation
bench: bench-generation

$(BENCH_STAMP):
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q -U pip
	# distilabel's OpenAILLM imports `requests` without declaring it in the openai extra.
	$(BENCH_VENV)/bin/python -m pip install -q 'distilabel[openai]==$(DISTILABEL_VERSION)' requests
	touch $@

bench-generation: venv $(BENCH_STAMP)
	$(PY) tests/bench/bench_generation.py --requests $(BENCH_GEN_REQUESTS) --distilabel-python $(BENCH_VENV)/bin/python

# Generation through the product path (issue 11): `acd build` and the build-acd flow against the test server
# (128 slots, lognormal 0.4 s / 0.6), clean and with 20% faults, beside the client alone.
.PHONY: bench-build-generation
bench: bench-build-generation

bench-build-generation: venv
	$(PY) tests/bench/bench_build_generation.py
