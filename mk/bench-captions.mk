# Caption quality benchmark (issue 14): grammar, fact check, length readings, variety and length per type of a
# demo build's chosen captions, beside the official AnyCap captions' figures. DATASET=out/demo reuses a build.
BENCH_CAPTIONS_ARGS ?= $(if $(DATASET),--dataset $(DATASET),)

.PHONY: bench-captions
bench: bench-captions

bench-captions: venv
	$(PY) tests/bench/bench_captions.py $(BENCH_CAPTIONS_ARGS)
