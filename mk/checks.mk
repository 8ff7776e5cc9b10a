# The checks against people (issue 21): how often they catch what blind readers reject, and what they say
# about the official AnyCap captions. Both write a committed JSON file the report and the dataset card quote.
#   make bench-checks       reader-labelled set tests/data/reader/*.jsonl -> schemas/checks_measured.json
#   make reference-checks   official slice ../shared/reference/anycap/acd -> schemas/reference_checks.json
BENCH_CHECKS_ARGS ?=
REFERENCE_CHECKS_ARGS ?=

.PHONY: bench-checks reference-checks

bench-checks: venv
	$(PY) -m acd.checks.bench $(BENCH_CHECKS_ARGS)

reference-checks: venv
	$(PY) -m acd.checks.official $(REFERENCE_CHECKS_ARGS)
