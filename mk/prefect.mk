# make up: a local Prefect server (SQLite under .prefect-home) + a process worker, deployments applied.
# make down: marks the flow runs the worker was running Cancelled, kills their processes (Prefect starts each
#   in its own session), then stops both by PID (.prefect-home/server.pid, worker.pid).
#   make up                      # port 4200 (refused with a clear message if something else holds it)
#   make up PREFECT_PORT=4311
#   export PREFECT_API_URL=http://127.0.0.1:<port>/api   # as printed by `make up`
#   prefect deployment run build-acd/demo
PREFECT_HOME_DIR ?= $(CURDIR)/.prefect-home
PREFECT_PORT ?= auto
PREFECT_ENV := PREFECT_HOME=$(PREFECT_HOME_DIR) PREFECT_SERVER_ANALYTICS_ENABLED=false ACD_PROJECT_DIR=$(CURDIR)

.PHONY: up down prefect-status
up: venv
	@$(PREFECT_ENV) $(PY) -m ops.services up --port $(PREFECT_PORT)

down:
	@$(PREFECT_ENV) $(PY) -m ops.services down

prefect-status:
	@$(PREFECT_ENV) $(PY) -m ops.services status
