# make up: a local Prefect server (SQLite under .prefect-home) + a process worker, deployments applied.
# make down: stops both, by PID.
PREFECT_HOME_DIR := $(CURDIR)/.prefect-home
PREFECT_PORT ?= 4200
PREFECT_ENV := PREFECT_HOME=$(PREFECT_HOME_DIR) PREFECT_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api \
	PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_UI_ENABLED=true ACD_PROJECT_DIR=$(CURDIR)

.PHONY: up down
up: venv
	@$(PREFECT_ENV) $(PY) -m acd.services up --port $(PREFECT_PORT)

down:
	@$(PREFECT_ENV) $(PY) -m acd.services down
