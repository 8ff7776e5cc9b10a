# Label Studio for human review: its own venv (.venv-labelstudio, label-studio==1.23.2), headless on 127.0.0.1.
#   make labelstudio        install if missing, start (idempotent), print URL + login
#   make labelstudio-stop
#   make labelstudio-sync RUN=runs/demo [OUT=out/demo] [RECIPE=...]   pull annotations, decide lots, regenerate
#                           rejected ones, re-export (sync-reviews flow; default OUT: where the build exported)
.PHONY: labelstudio labelstudio-stop labelstudio-sync

labelstudio:
	bash scripts/labelstudio.sh start

labelstudio-stop:
	bash scripts/labelstudio.sh stop

labelstudio-sync: venv
	LABEL_STUDIO_API_KEY=$${LABEL_STUDIO_API_KEY:-$$(cat .cache/labelstudio/data/acd-token)} \
	  $(PY) flows/sync_reviews.py --run $(RUN) $(if $(OUT),--out $(OUT)) $(if $(RECIPE),--recipe $(RECIPE))
