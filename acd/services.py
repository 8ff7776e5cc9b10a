"""`make up` / `make down`: a local Prefect server and a process worker, tracked by PID files.

    python -m acd.services up [--port 4200]   # server (SQLite), work pool, deployments, worker
    python -m acd.services down               # stops what `up` started, by PID

Tests use the same functions to get a real server on a free port.
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

PROJECT_DIR = Path(__file__).resolve().parent.parent
POOL = "acd-local"


def prefect_home() -> Path:
    return Path(os.environ.get("PREFECT_HOME", PROJECT_DIR / ".prefect-home"))


def _env(port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PREFECT_HOME=str(prefect_home()),
        PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_API_HOST="127.0.0.1",
        PREFECT_SERVER_API_PORT=str(port),
        ACD_PROJECT_DIR=str(env.get("ACD_PROJECT_DIR", PROJECT_DIR)),
    )
    return env


def _prefect() -> list[str]:
    return [sys.executable, "-m", "prefect"]


def _spawn(name: str, args: list[str], env: dict[str, str]) -> int:
    home = prefect_home()
    home.mkdir(parents=True, exist_ok=True)
    log = open(home / f"{name}.log", "ab")
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=env["ACD_PROJECT_DIR"],
                            start_new_session=True)
    (home / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def wait_healthy(port: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    url = f"http://127.0.0.1:{port}/api/health"
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"Prefect server did not answer on {url} within {timeout_s:.0f}s (see {prefect_home()}/server.log)")


def up(port: int = 4200, worker: bool = True, deploy: bool = True) -> dict[str, str]:
    env = _env(port)
    try:
        wait_healthy(port, timeout_s=1)
        print(f"a Prefect server already answers on port {port}; reusing it")
    except TimeoutError:
        _spawn("server", _prefect() + ["server", "start", "--host", "127.0.0.1", "--port", str(port)], env)
        wait_healthy(port)
    run = lambda *a: subprocess.run(_prefect() + list(a), env=env, check=True, cwd=env["ACD_PROJECT_DIR"],
                                    stdout=subprocess.DEVNULL)
    existing = subprocess.run(_prefect() + ["work-pool", "inspect", POOL], env=env, capture_output=True)
    if existing.returncode != 0:
        run("work-pool", "create", POOL, "--type", "process")
    if deploy:
        run("--no-prompt", "deploy", "--all")
    if worker:
        _spawn("worker", _prefect() + ["worker", "start", "--pool", POOL, "--limit", "2"], env)
    ui = f"http://127.0.0.1:{port}"
    print(f"Prefect UI: {ui}")
    print(f"API: {env['PREFECT_API_URL']}  (export PREFECT_API_URL={env['PREFECT_API_URL']})")
    print("run a build: prefect deployment run build-acd/demo")
    return {"ui": ui, "api": env["PREFECT_API_URL"]}


def down() -> None:
    home = prefect_home()
    for name in ("worker", "server"):
        pid_file = home / f"{name}.pid"
        if not pid_file.exists():
            continue
        pid = int(pid_file.read_text())
        try:
            os.killpg(pid, signal.SIGTERM)
            for _ in range(50):
                os.kill(pid, 0)
                time.sleep(0.2)
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        pid_file.unlink(missing_ok=True)
        print(f"stopped {name} (pid {pid})")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m acd.services")
    sub = p.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("up")
    u.add_argument("--port", type=int, default=4200)
    sub.add_parser("down")
    a = p.parse_args(argv)
    if a.cmd == "up":
        up(a.port)
    else:
        down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
