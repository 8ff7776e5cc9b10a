"""`make down` in the middle of a build, then `make up` at once on the same port (ops/services.py).

A separate server and worker (their own PREFECT_HOME and port), since `down` stops them: the build's flow
run and its unfinished task runs end Cancelled, not RUNNING forever, and the server comes back on the same
port at once although the old server's connections linger in TIME_WAIT.

[postgres] runs the real `make up DB=postgres` / `make down`: the server's PostgreSQL (ops/postgres.py, under
<home>/postgres) starts with `make up`, stops with `make down`, and its data survives: the second `make up
DB=postgres` still lists the flow run.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.prefect_server, pytest.mark.timeout(400)]
ROOT = Path(__file__).resolve().parents[2]


def _make(target: str, home: Path, port: int, *args: str) -> str:
    """`make <target>` as a user runs it (-o venv: the test's interpreter is the venv; do not rebuild it)."""
    res = subprocess.run(["make", "-s", "-o", "venv", target, f"PY={sys.executable}", f"PREFECT_HOME_DIR={home}",
                          f"PREFECT_PORT={port}", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"make {target} failed:\n{res.stdout}\n{res.stderr}"
    return res.stdout


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_down_mid_build_cancels_the_run_and_up_reuses_the_port(tmp_path, tiny_overrides, monkeypatch, db):
    from ops import postgres, services

    monkeypatch.setenv("PREFECT_WORKER_QUERY_SECONDS", "1")
    monkeypatch.setenv("ACD_PROJECT_DIR", str(ROOT))
    monkeypatch.delenv(services.DB_URL_ENV, raising=False)
    home, port = tmp_path / "home", services.free_port()
    pg_dir = services.postgres_dir(home)
    if db == "postgres":
        said = _make("up", home, port, "DB=postgres")  # all deployments, the worker, and PostgreSQL first
        assert "prefect:***@127.0.0.1" in said and (pg_dir / "password").read_text().strip() not in said, said
        info = {"env": services.env_for(port, home), "api": f"http://127.0.0.1:{port}/api"}
        assert postgres.running(pg_dir) and (home / "database").read_text() == "postgres"
        assert not (home / "prefect.db").exists(), "the server must not have used SQLite"
    else:
        info = services.up(port=port, home=home, quiet=True, do_deploy=False)
    try:
        if db == "sqlite":
            assert services.deploy(info["env"], refs=["build-acd/demo"])["deployed"] == ["build-acd/demo"]
        out, run = tmp_path / "out", tmp_path / "run"
        # Enough small lots that the build is still generating long after its first part lands, however fast
        # lots have become (160 pairs once finished inside the seconds `down` takes).
        overrides = {**tiny_overrides, "pairs": {"image": 400, "video": 400, "audio": 240}, "lot_size": 4}
        cli = subprocess.run([sys.executable, "-m", "prefect", "deployment", "run", "build-acd/demo",
                              "--param", f"out_dir={out}", "--param", f"run_dir={run}",
                              "--param", f"overrides={json.dumps(overrides)}"],
                             env=info["env"], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert cli.returncode == 0, cli.stdout + cli.stderr
        run_id = re.search(r"UUID:\s*([0-9a-f-]{36})", cli.stdout).group(1)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any((run / "generate").glob("*/part-*.parquet")):
            time.sleep(0.1)
        assert any((run / "generate").glob("*/part-*.parquet")), (home / "worker.log").read_text()[-3000:]
    finally:
        if db == "postgres":
            said = _make("down", home, port)
            stopped = [ln for ln in said.splitlines() if ln.startswith("stopped ")]
        else:
            stopped = services.down(quiet=True, home=home)
    assert len(stopped) == (3 if db == "postgres" else 2), stopped
    assert not (out / "manifest.json").exists(), "down must land mid-build"
    if db == "postgres":
        assert postgres.running(pg_dir) is None and (pg_dir / "data" / "PG_VERSION").exists()
    # The flow-run process dies with the worker (Prefect starts it in a session of its own; it once finished
    # the build after `down`): nothing more is written to the run.
    parts = sorted((run / "generate").glob("*/part-*.parquet"))
    time.sleep(3)
    assert sorted((run / "generate").glob("*/part-*.parquet")) == parts and not (out / "manifest.json").exists()

    t0 = time.monotonic()
    if db == "postgres":
        _make("up", home, port, "DB=postgres")  # make up right after; the old cluster, the old flow runs
        again = {"port": port, "api": info["api"]}
    else:
        again = services.up(port=port, home=home, worker=False, do_deploy=False, quiet=True)
    try:
        assert again["port"] == port
        print(f"server back on port {port} in {time.monotonic() - t0:.1f}s after down")
        with httpx.Client(base_url=again["api"], timeout=30) as http:
            fr = http.get(f"/flow_runs/{run_id}").json()
            assert fr["state"]["type"] == "CANCELLED", fr["state"]
            assert "make down" in fr["state"]["message"]
            trs = http.post("/task_runs/filter", json={"flow_runs": {"id": {"any_": [run_id]}}, "limit": 200}).json()
            states = {tr["state"]["type"] for tr in trs}
            assert trs and not states & {"RUNNING", "PENDING", "SCHEDULED"}, states
            listed = http.post("/flow_runs/filter", json={"limit": 50}).json()
            assert run_id in {fr["id"] for fr in listed}
    finally:
        services.down(quiet=True, home=home)
    assert postgres.running(pg_dir) is None
