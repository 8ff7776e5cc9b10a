"""One driver per run directory: a lock file naming the process (and Prefect flow run) that holds it.

A driver killed with SIGKILL leaves its lock behind; the next driver on the same host sees the PID is gone,
takes the lock over and gets the stale owner back, so the flow can mark that orphaned flow run Crashed
instead of leaving it RUNNING forever. A live owner is never overridden.
"""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path


class RunLocked(RuntimeError):
    pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def acquire(run_dir: str | Path, **owner) -> dict | None:
    """Take the lock; return the previous (dead) owner's record if one was left behind, else None."""
    path = Path(run_dir) / "driver.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(), **owner}
    stale = None
    if path.exists():
        try:
            prev = json.loads(path.read_text())
        except (OSError, ValueError):
            prev = {}
        if prev.get("pid") == me["pid"] and prev.get("host") == me["host"]:
            stale = None
        elif prev.get("host") == me["host"] and _alive(int(prev.get("pid", 0))):
            raise RunLocked(f"{run_dir} is being built by pid {prev['pid']} ({prev.get('flow_run_id') or 'cli'})")
        elif prev.get("host") not in (None, me["host"]):
            raise RunLocked(f"{run_dir} is locked by {prev['host']} pid {prev.get('pid')}; remove {path} if it is dead")
        else:
            stale = prev
    tmp = path.with_name(f".driver.lock.{os.getpid()}")
    tmp.write_text(json.dumps(me, sort_keys=True))
    os.replace(tmp, path)
    return stale


def release(run_dir: str | Path) -> None:
    path = Path(run_dir) / "driver.lock"
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass
