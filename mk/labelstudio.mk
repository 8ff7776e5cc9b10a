# Label Studio for human review: its own venv (.venv-labelstudio, label-studio==1.23.2), headless on 127.0.0.1.
#   make labelstudio        install if missing, start (idempotent), print URL + login
#   make labelstudio-stop
#   make labelstudio-sync RUN=runs/demo RECIPE=demo   pull annotations and decide lots (sync-reviews flow)
.PHONY: labelstudio labelstudio-stop labelstudio-sync

labelstudio:
	bash scripts/labelstudio.sh start

labelstudio-stop:
	bash scripts/labelstudio.sh stop

labelstudio-sync: venv
	LABEL_STUDIO_API_KEY=$${LABEL_STUDIO_API_KEY:-$$(cat .cache/labelstudio/data/acd-token)} \
	  $(PY) flows/sync_reviews.py --run $(RUN) --recipe $(or $(RECIPE),demo)
