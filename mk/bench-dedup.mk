# Media dedup benchmark (issue 25): acd-300k's 50k media (synthetic, hashed as if real) through ingest's own work
# and the hashes the ingest unit adds, side by side per batch, then the dedup stage's matching; prints the
# dedup time and its share of ingest. BENCH_DEDUP_SCALE=0.2 runs a proportional slice (and extrapolates).
BENCH_DEDUP_SCALE ?= 1.0
BENCH_DEDUP_DIR ?= /tmp/acd-bench-dedup

.PHONY: bench-dedup
bench: bench-dedup

bench-dedup: venv
	$(PY) tests/bench/bench_dedup.py --scale $(BENCH_DEDUP_SCALE) --workdir $(BENCH_DEDUP_DIR)
