# Scale benchmark (issue 5): the full acd-300k recipe (grounded backend) from scratch on this machine; prints
# wall time, peak RSS of the process tree, seconds per stage and the orchestration overhead against the goals
# (<= 30 min, <= 4 GiB, <= 10 %). BENCH_SCALE=0.0333 runs a proportional 10k-pair slice instead.
BENCH_SCALE ?= 1.0
BENCH_SCALE_DIR ?= /tmp/acd-bench-scale

.PHONY: bench-scale
bench: bench-scale

bench-scale: venv
	$(PY) tests/bench/bench_scale.py --scale $(BENCH_SCALE) --workdir $(BENCH_SCALE_DIR)
