"""`make up` / `make down`: a local Prefect server and a process worker, tracked by PID files.

    python -m ops.services up [--port 4200|auto] [--db sqlite|postgres]   # server, work pool, deployments, worker
    python -m ops.services down        # marks unfinished flow runs Cancelled, stops worker, server, PostgreSQL
    python -m ops.services status

Everything lives under PREFECT_HOME (default <project>/.prefect-home): the SQLite database, or with --db
postgres a local PostgreSQL's cluster in postgres/ (ops/postgres.py), server.pid, worker.pid, port, database
(which one the running server uses), server.log, worker.log. PREFECT_API_DATABASE_CONNECTION_URL set by the
user wins over --db: the server uses that database and `up` starts none.
Deployments come from prefect.yaml, one `prefect deploy --name <flow>/<deployment>` per entry whose entrypoint
file exists (a flow file another team has not written yet is skipped and reported, instead of failing `prefect
deploy --all` as a whole).
The integration tests use the same functions to get a real server on a free port.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from acd import runlock
from ops import postgres
from ops.net import free_port, port_free  # noqa: F401 - free_port: services.free_port() in tests

PROJECT_DIR = Path(__file__).resolve().parent.parent
POOL = "acd-local"
DEFAULT_PORT = 4200
DB_URL_ENV = "PREFECT_API_DATABASE_CONNECTION_URL"

# Popen objects of the processes this interpreter started (so stop() can reap them: a killed child that is
# never waited for stays a zombie, and a zombie still answers kill(pid, 0)).
_CHILDREN: dict[int, subprocess.Popen] = {}


def prefect_home() -> Path:
    return Path(os.environ.get("PREFECT_HOME", PROJECT_DIR / ".prefect-home"))


def project_dir() -> Path:
    return Path(os.environ.get("ACD_PROJECT_DIR", PROJECT_DIR))


def env_for(port: int, home: Path | None = None) -> dict[str, str]:
    """The environment of every process `up` starts (and of clients that talk to that server)."""
    env = dict(os.environ)
    env.update(
        PREFECT_HOME=str(home or prefect_home()),
        PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_API_HOST="127.0.0.1",
        PREFECT_SERVER_API_PORT=str(port),
        PREFECT_UI_API_URL=f"http://127.0.0.1:{port}/api",
        ACD_PROJECT_DIR=str(project_dir()),
    )
    env.setdefault("PREFECT_WORKER_QUERY_SECONDS", "5")  # how soon a worker picks up a new run
    # ACD_DASK_ADDRESS / ACD_DASK_WORKERS pass through: `ACD_DASK_ADDRESS=tcp://... make up` runs lots on Dask.
    return env


def pid_alive(pid: int) -> bool:
    """True for a running process; False for a missing one or a zombie (dead, not yet reaped)."""
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:  # our own child: reap it, so it is not a zombie
        return False
    return runlock.pid_alive(pid)


def _read_pid(name: str, home: Path | None = None) -> int | None:
    """The PID in <home>/<name>.pid if that process is alive and still a prefect process (not a reused PID)."""
    f = (home or prefect_home()) / f"{name}.pid"
    try:
        pid = int(f.read_text().strip())
    except (OSError, ValueError):
        return None
    if not pid_alive(pid):
        return None
    try:
        if b"prefect" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return None
    except OSError:
        pass
    return pid


def _prefect() -> list[str]:
    return [sys.executable, "-m", "prefect"]


def _spawn(name: str, args: list[str], env: dict[str, str]) -> int:
    home = Path(env["PREFECT_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    with open(home / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=env["ACD_PROJECT_DIR"],
                                stdin=subprocess.DEVNULL, start_new_session=True)
    _CHILDREN[proc.pid] = proc
    (home / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def wait_healthy(port: int, timeout_s: float = 120, pid: int | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    url = f"http://127.0.0.1:{port}/api/health"
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if pid is not None and not pid_alive(pid):
            break
        time.sleep(0.3)
    log = log or prefect_home() / "server.log"
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise TimeoutError(f"Prefect server did not answer on {url} within {timeout_s:.0f}s ({log}):\n{tail}")


def _last_exception(log: Path) -> str:
    """The last `SomeError: message` line of a log (a traceback's summary), else its last line."""
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()] if log.exists() else []
    for ln in reversed(lines):
        head = ln.split(":", 1)[0]
        if ":" in ln and head.replace(".", "").isidentifier() and head.endswith(("Error", "Exception")):
            return ln
    return lines[-1] if lines else "(empty log)"


def deployment_entries(prefect_yaml: Path | None = None) -> list[dict]:
    """prefect.yaml's deployments as {ref: 'flow-name/deployment', entrypoint, exists}."""
    path = prefect_yaml or project_dir() / "prefect.yaml"
    spec = yaml.safe_load(path.read_text())
    out = []
    for d in spec.get("deployments") or []:
        entry = d["entrypoint"]
        file, func = entry.rsplit(":", 1)
        out.append({
            # `prefect deploy --name flow/deployment` matches the entrypoint's function name (- and _ alike);
            # the flow's registered name is the function name with dashes (build_acd -> build-acd).
            "ref": f"{func.replace('_', '-')}/{d['name']}",
            "entrypoint": entry,
            "exists": (path.parent / file).is_file(),
        })
    return out


def deploy(env: dict[str, str], refs: list[str] | None = None) -> dict[str, list[str]]:
    """Apply the deployments whose entrypoint file exists. Returns {deployed, skipped, failed}."""
    entries = deployment_entries(Path(env["ACD_PROJECT_DIR"]) / "prefect.yaml")
    if refs is not None:
        entries = [e for e in entries if e["ref"] in refs]
    skipped = [f"{e['ref']} (no file {e['entrypoint'].rsplit(':', 1)[0]})" for e in entries if not e["exists"]]
    todo = [e["ref"] for e in entries if e["exists"]]
    deployed: list[str] = []
    failed: list[str] = []

    def run(names: list[str]) -> subprocess.CompletedProcess:
        args = _prefect() + ["--no-prompt", "deploy"]
        for n in names:
            args += ["--name", n]
        return subprocess.run(args, env=env, cwd=env["ACD_PROJECT_DIR"], capture_output=True, text=True)

    if todo:
        res = run(todo)  # one process for all: each `prefect deploy` costs seconds of imports
        if res.returncode == 0:
            deployed = todo
        else:  # one broken flow file must not keep the others from deploying: retry one by one
            for ref in todo:
                r = run([ref])
                if r.returncode == 0:
                    deployed.append(ref)
                else:
                    lines = [ln for ln in (r.stdout + r.stderr).strip().splitlines() if ln.strip()]
                    failed.append(f"{ref} ({lines[-1].strip() if lines else 'exit %d' % r.returncode})")
    return {"deployed": deployed, "skipped": skipped, "failed": failed}


def _pick_port(port: int | str | None, home: Path) -> int:
    """The port asked for; 'auto' is the running server's port, else 4200 — never silently another one (the
    README tells users to export PREFECT_API_URL with 4200; a server elsewhere would not be found)."""
    if port in (None, "", "auto", 0, "0"):
        saved = home / "port"
        if _read_pid("server", home) and saved.exists():
            return int(saved.read_text())
        return DEFAULT_PORT
    return int(port)


def _database(db: str | None, home: Path, server_running: bool) -> tuple[str, str | None]:
    """(kind, connection URL for the server) — kind is sqlite, postgres (ours, under <home>/postgres) or
    external (the user's PREFECT_API_DATABASE_CONNECTION_URL; we start none). db=None: the running server's
    database, else SQLite. A running server on another database than asked is refused, not silently kept."""
    saved = (home / "database").read_text().strip() if (home / "database").exists() else "sqlite"
    if os.environ.get(DB_URL_ENV):
        want = "external"
    elif db in (None, ""):
        want = saved if server_running else "sqlite"
    else:
        want = db
    if server_running and want != saved:
        raise SystemExit(f"the Prefect server in {home} runs on {saved}, not {want}: `make down` first, then "
                         f"`make up{' DB=' + want if want in ('sqlite', 'postgres') else ''}`")
    if want == "postgres":
        try:
            return want, postgres.start(postgres_dir(home))
        except postgres.PostgresError as exc:
            raise SystemExit(str(exc)) from None
    if want == "external":
        return want, os.environ[DB_URL_ENV]
    if want != "sqlite":
        raise SystemExit(f"unknown database {want!r}: sqlite or postgres")
    return want, None


def postgres_dir(home: Path) -> Path:
    return home / "postgres"


def up(port: int | str | None = None, worker: bool = True, do_deploy: bool = True, quiet: bool = False,
       home: str | Path | None = None, db: str | None = None) -> dict:
    """Start (or reuse) the server, create the process work pool, apply deployments, start the worker.
    db: sqlite (the default) or postgres (a local PostgreSQL under <home>/postgres, started first)."""
    say = (lambda *a: None) if quiet else print
    home = Path(home) if home else prefect_home()
    home.mkdir(parents=True, exist_ok=True)
    port = _pick_port(port, home)
    env = env_for(port, home)
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    server_pid = _read_pid("server", home)
    kind, db_url = _database(db, home, server_running=server_pid is not None)
    if kind == "postgres":
        say(f"PostgreSQL for Prefect: {postgres.masked(db_url)} (data in {postgres_dir(home) / 'data'})")
    elif kind == "external":
        say(f"Prefect database from {DB_URL_ENV}: {postgres.masked(db_url)} (not started or stopped by make)")
    timings["database_s"] = time.monotonic() - t0
    try:
        wait_healthy(port, timeout_s=1)
        say(f"a Prefect server already answers on port {port}; reusing it")
    except TimeoutError:
        if not port_free(port):
            raise SystemExit(f"port {port} is taken by something that is not a Prefect server; stop it or "
                             f"choose another port: make up PREFECT_PORT=<port> (then export "
                             f"PREFECT_API_URL=http://127.0.0.1:<port>/api)")
        # Only the server gets the URL (it holds our PostgreSQL's password); the worker and clients talk HTTP.
        server_env = {**env, DB_URL_ENV: db_url} if db_url else env
        server_pid = _spawn("server", _prefect() + ["server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            server_env)
        try:
            wait_healthy(port, pid=server_pid, log=home / "server.log")
        except TimeoutError:
            # One line: the server's last exception (e.g. its database refusing it), not a page of traceback.
            where = f"{kind} database" + (f" {postgres.masked(db_url)}" if db_url else "")
            raise SystemExit(f"the Prefect server did not start on the {where}: "
                             f"{_last_exception(home / 'server.log')} (log: {home / 'server.log'})") from None
    (home / "port").write_text(str(port))
    (home / "database").write_text(kind)
    timings["server_s"] = time.monotonic() - t0

    t0 = time.monotonic()
    pool = subprocess.run(_prefect() + ["work-pool", "inspect", POOL], env=env, capture_output=True)
    if pool.returncode != 0:
        subprocess.run(_prefect() + ["work-pool", "create", POOL, "--type", "process"], env=env, check=True,
                       capture_output=True)
    result = {"deployed": [], "skipped": [], "failed": []}
    if do_deploy:
        result = deploy(env)
        for ref in result["deployed"]:
            say(f"deployed {ref}")
        for ref in result["skipped"]:
            say(f"skipped  {ref}")
        for ref in result["failed"]:
            say(f"FAILED   {ref}")
    timings["deploy_s"] = time.monotonic() - t0

    worker_pid = _read_pid("worker", home)
    if worker and worker_pid is None:
        worker_pid = start_worker(env)
    ui = f"http://127.0.0.1:{port}"
    say(f"Prefect UI: {ui}")
    say(f"export PREFECT_API_URL={env['PREFECT_API_URL']}")
    say("run a build: prefect deployment run build-acd/demo")
    return {"ui": ui, "api": env["PREFECT_API_URL"], "port": port, "env": env, "server_pid": server_pid,
            "worker_pid": worker_pid, "database": kind, "timings": timings, **result}


def start_worker(env: dict[str, str]) -> int:
    return _spawn("worker", _prefect() + ["worker", "start", "--pool", POOL, "--type", "process", "--limit", "2"],
                  env)


def stop_pid(pid: int, timeout_s: float = 15) -> None:
    """SIGTERM the process group `pid` leads (server + uvicorn, worker + its flow-run processes), then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + (timeout_s if sig == signal.SIGTERM else 5)
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.2)
        if not pid_alive(pid):
            break
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def _kill_descendants(pid: int) -> int:
    """SIGKILL every live descendant of `pid` (the worker's flow-run processes); returns how many there were.
    A build is safe to kill anywhere (parts are committed atomically; the next run resumes)."""
    import psutil

    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return 0
    killed = []
    for p in children:
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                p.kill()  # psutil checks it is still the process listed (no reused PID)
                killed.append(p)
        except psutil.Error:  # gone meanwhile
            pass
    psutil.wait_procs(killed, timeout=5)
    return len(killed)


def down(quiet: bool = False, home: str | Path | None = None) -> list[str]:
    """Stop the worker's flow runs, the worker, then the server; the flow runs (and their unfinished task
    runs) end Cancelled instead of staying RUNNING.

    Order matters. Prefect's process worker starts each flow run in a session of its own, and on SIGTERM it
    may wait for that run instead of stopping it (seen here: the worker hung, was killed after 15 s, and the
    build it had started finished by itself). So the runs are first marked Cancelled (a terminal state: the
    server then refuses the Crashed their dying processes would propose), then their processes are killed,
    then the worker is stopped, and last any task run still unfinished is settled."""
    from flows import runstate

    home = Path(home) if home else prefect_home()
    say = (lambda *a: None) if quiet else print
    message = "stopped by `make down` (the worker was stopped mid-run)"
    stopped = []
    api, active = None, []
    if _read_pid("server", home) and (home / "port").exists():
        api = f"http://127.0.0.1:{int((home / 'port').read_text())}/api"
        try:
            active = [r["id"] for r in runstate.active_flow_runs(POOL, api)]
        except (httpx.HTTPError, RuntimeError) as exc:
            say(f"could not list running flow runs: {exc}")

    def mark_cancelled() -> int:
        try:
            return runstate.cancel_runs(active, message, api)
        except httpx.HTTPError as exc:
            say(f"could not mark flow runs Cancelled: {exc}")
            return 0

    for name in ("worker", "server"):
        pid_file = home / f"{name}.pid"
        pid = _read_pid(name, home)
        if pid is not None:
            if name == "worker":
                n = mark_cancelled() if active and api else 0
                killed = _kill_descendants(pid)
                if n or killed:
                    say(f"marked {n} unfinished flow run(s) Cancelled; stopped {killed} flow-run process(es)")
            stop_pid(pid)
            stopped.append(f"{name} (pid {pid})")
            if not quiet:
                print(f"stopped {name} (pid {pid})")
        pid_file.unlink(missing_ok=True)
        if name == "worker" and active and api:
            mark_cancelled()  # task runs that ended unfinished while the processes died
    _cancel_batches(say)
    try:  # after the server: it flushes its last writes (the Cancelled states above) on the way down
        pg_pid = postgres.stop(postgres_dir(home))
    except postgres.PostgresError as exc:
        raise SystemExit(str(exc)) from None
    if pg_pid is not None:
        stopped.append(f"postgres (pid {pg_pid})")
        say(f"stopped postgres (pid {pg_pid}); its data stays in {postgres_dir(home) / 'data'}")
    if not stopped and not quiet:
        print(f"nothing to stop (no live PIDs in {home})")
    return stopped


def _cancel_batches(say) -> None:
    """Batch API batches of builds that were running (backend.mode: batch) would go on running and costing on the
    provider's side once their flow runs are gone: cancel them, and say what was in flight. A rerun of the build
    takes their partial results and resubmits the rest."""
    try:
        from acd.backends.batch import cancel_registered

        for c in cancel_registered():
            say(f"cancelled batch {c}")
    except Exception as exc:  # noqa: BLE001 - `make down` must still stop the services
        say(f"could not cancel running batches: {type(exc).__name__}: {exc}")


def status() -> int:
    home = prefect_home()
    port = (home / "port").read_text().strip() if (home / "port").exists() else "?"
    for name in ("server", "worker"):
        pid = _read_pid(name)
        print(f"{name}: {'pid %d' % pid if pid else 'not running'}")
    pg = postgres.running(postgres_dir(home))
    kind = (home / "database").read_text().strip() if (home / "database").exists() else "sqlite"
    print(f"database: {kind}" + (f" (postgres pid {pg[0]}, 127.0.0.1:{pg[1]})" if pg else ""))
    print(f"UI: http://127.0.0.1:{port}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ops.services")
    sub = p.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("up")
    u.add_argument("--port", default="auto", help="port for the server, or 'auto' (the running server's, else 4200)")
    u.add_argument("--db", choices=["sqlite", "postgres"], default=None,
                   help="the server's database (default: the running server's, else sqlite); "
                        f"{DB_URL_ENV} in the environment overrides it")
    u.add_argument("--no-worker", action="store_true")
    u.add_argument("--no-deploy", action="store_true")
    sub.add_parser("down")
    sub.add_parser("status")
    a = p.parse_args(argv)
    if a.cmd == "up":
        t0 = time.monotonic()
        info = up(a.port, worker=not a.no_worker, do_deploy=not a.no_deploy, db=a.db)
        print(f"up in {time.monotonic() - t0:.1f}s (server {info['timings']['server_s']:.1f}s, "
              f"deployments {info['timings']['deploy_s']:.1f}s)")
        return 1 if info["failed"] else 0
    if a.cmd == "status":
        return status()
    down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
