"""Final states for runs nobody is left to finish: what a SIGKILL or `make down` leaves RUNNING.

Prefect marks a flow run Crashed only when a process survives to say so (the process worker, for its own
child). Task runs are never marked: a killed flow run's in-flight task runs stay RUNNING forever, and a
flow run whose worker is stopped (`make down` mid-build) stays RUNNING too. These helpers set those
states through the server's REST API (`force`, since the runs are not ours by orchestration rules):

- `settle_orphan`: the next build of a run directory found a dead driver's lock (acd.runlock); its flow
  run becomes Crashed (if not already final) and its unfinished task runs Crashed.
- `active_flow_runs` + `cancel_runs`: `make down` notes the work pool's unfinished flow runs, stops the
  worker (and with it their processes), then marks those runs Cancelled, their unfinished task runs too.
"""
from __future__ import annotations

import os
from typing import Any

import httpx

UNFINISHED = ["SCHEDULED", "PENDING", "RUNNING", "CANCELLING", "PAUSED"]
_NAMES = {"CRASHED": "Crashed", "CANCELLED": "Cancelled"}


def _client(api_url: str | None) -> httpx.Client:
    url = api_url or os.environ.get("PREFECT_API_URL")
    if not url:
        raise RuntimeError("no Prefect API URL (PREFECT_API_URL)")
    return httpx.Client(base_url=url.rstrip("/"), timeout=15)


def _set_state(http: httpx.Client, kind: str, run_id: str, state: str, message: str) -> None:
    r = http.post(f"/{kind}/{run_id}/set_state",
                  json={"state": {"type": state, "name": _NAMES[state], "message": message}, "force": True})
    r.raise_for_status()


def _unfinished_task_runs(http: httpx.Client, flow_run_ids: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        r = http.post("/task_runs/filter", json={
            "flow_runs": {"id": {"any_": flow_run_ids}},
            "task_runs": {"state": {"type": {"any_": UNFINISHED}}},
            "sort": "ID_DESC", "offset": len(out), "limit": 200,
        })
        r.raise_for_status()
        page = r.json()
        out += page
        if len(page) < 200:
            return out


def settle_tasks(http: httpx.Client, flow_run_ids: list[str], state: str, message: str) -> int:
    runs = _unfinished_task_runs(http, flow_run_ids) if flow_run_ids else []
    for tr in runs:
        _set_state(http, "task_runs", tr["id"], state, message)
    return len(runs)


def settle_orphan(flow_run_id: str, message: str, api_url: str | None = None) -> dict[str, Any]:
    """A flow run whose driver died: Crashed (unless already final), its unfinished task runs Crashed."""
    with _client(api_url) as http:
        r = http.get(f"/flow_runs/{flow_run_id}")
        r.raise_for_status()
        fr = r.json()
        state = (fr.get("state") or {}).get("type")
        marked = state in UNFINISHED
        if marked:
            _set_state(http, "flow_runs", flow_run_id, "CRASHED", message)
        tasks = settle_tasks(http, [flow_run_id], "CRASHED", message)
    return {"name": fr.get("name"), "previous_state": state, "flow_run_marked": marked, "task_runs_marked": tasks}


def active_flow_runs(work_pool: str, api_url: str | None = None) -> list[dict[str, Any]]:
    with _client(api_url) as http:
        r = http.post("/flow_runs/filter", json={
            "flow_runs": {"state": {"type": {"any_": ["PENDING", "RUNNING", "CANCELLING", "PAUSED"]}}},
            "work_pools": {"name": {"any_": [work_pool]}}, "limit": 200,
        })
        r.raise_for_status()
        return r.json()


def cancel_runs(flow_run_ids: list[str], message: str, api_url: str | None = None) -> int:
    """Mark these flow runs Cancelled (those still unfinished) and their unfinished task runs Cancelled."""
    n = 0
    with _client(api_url) as http:
        for run_id in flow_run_ids:
            r = http.get(f"/flow_runs/{run_id}")
            r.raise_for_status()
            if ((r.json().get("state") or {}).get("type")) in UNFINISHED:
                _set_state(http, "flow_runs", run_id, "CANCELLED", message)
                n += 1
        settle_tasks(http, flow_run_ids, "CANCELLED", message)
    return n
