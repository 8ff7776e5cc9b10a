# ACM training and AnyCapEval on the latest built dataset (default: the demo build).
#   make train                      tiny ACM on out/demo -> runs/acm/demo-tiny (resumes if interrupted; prints
#                                   the checkpoint path). Runs are named after the dataset's own name (its manifest).
#   make train DATASET=out/x ACM_CONFIG=my-gpu STEPS=1000
#   make eval                       synthetic split from the dataset's test shards: base vs base+ACM
#   make eval EVAL_PHRASING=dataset   instructions in the build's own wording (default: unseen eval wording)
#   make eval-reference             the official AnyCapEval slice (reference captions; judge sanity)
DATASET ?= out/demo
ACM_CONFIG ?= tiny
DATASET_NAME = $(shell $(PY) -c 'import sys; from acd.export.manifest import dataset_name; print(dataset_name(sys.argv[1]))' $(DATASET) 2>/dev/null || basename $(DATASET))
ACM_RUN ?= runs/acm/$(DATASET_NAME)-$(ACM_CONFIG)
STEPS ?=
EVAL_CAPTIONER ?= grounded:rejected
EVAL_SPLIT ?= test
EVAL_PHRASING ?= eval
EVAL_OUT ?= runs/anycapeval/$(DATASET_NAME)

.PHONY: train eval eval-reference

train: venv
	@test -d $(DATASET)/shards || { echo "no built dataset at $(DATASET) (run 'make demo' first)"; exit 1; }
	time $(PY) -m acd.acm.train --dataset $(DATASET) --config $(ACM_CONFIG) --out $(ACM_RUN) $(if $(STEPS),--steps $(STEPS))

eval: venv
	$(PY) -m acd.evaluation.synthetic_split --dataset $(DATASET) --split $(EVAL_SPLIT) --phrasing $(EVAL_PHRASING) --out $(EVAL_OUT)/bench
	$(PY) -m acd.evaluation.anycapeval --bench $(EVAL_OUT)/bench --captioner $(EVAL_CAPTIONER) \
		$(if $(wildcard $(ACM_RUN)/latest),--acm $(ACM_RUN)) --out $(EVAL_OUT)

eval-reference: venv
	$(PY) -m acd.evaluation.anycapeval --sanity
	$(PY) -m acd.evaluation.anycapeval --captioner reference --out runs/anycapeval/reference
