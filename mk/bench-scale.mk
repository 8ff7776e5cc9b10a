# Scale benchmark (issues 5, 16): the acd-300k recipe (grounded backend) from scratch on this machine at several
# scales; prints wall time, peak RSS of the process tree, seconds per stage, the orchestration overhead and disk
# bytes per pair for each, then the scale curve with ratios to the smallest build (goals: linear time, flat
# RSS, overhead <= 5% at 300k). BENCH_SCALE_CURVE=0.1,0.3333,1,3.3333 adds the 1M-pair build;
# BENCH_SCALE_CURVE= (empty) with BENCH_SCALE=0.0333 runs one proportional 10k-pair slice instead.
BENCH_SCALE ?= 1.0
BENCH_SCALE_CURVE ?= 0.1,0.3333,1
BENCH_SCALE_DIR ?= /tmp/acd-bench-scale

.PHONY: bench-scale
bench: bench-scale

bench-scale: venv
	$(PY) tests/bench/bench_scale.py $(if $(BENCH_SCALE_CURVE),--curve $(BENCH_SCALE_CURVE),--scale $(BENCH_SCALE)) --workdir $(BENCH_SCALE_DIR)
