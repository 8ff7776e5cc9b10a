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
    """A running process. A zombie (killed, not yet reaped: e.g. a SIGKILLed flow-run process whose worker
    died too, in a container whose PID 1 does not reap) answers kill(pid, 0) but is dead."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] not in "ZX"
    except (OSError, ValueError, IndexError):
        return True


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused PID from the owner."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _owner_alive(prev: dict) -> bool:
    pid = int(prev.get("pid", 0) or 0)
    if not _alive(pid):
        return False
    started = prev.get("started")
    return started is None or _start_time(pid) in (None, started)


def acquire(run_dir: str | Path, **owner) -> dict | None:
    """Take the lock; return the previous (dead) owner's record if one was left behind, else None."""
    path = Path(run_dir) / "driver.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": _start_time(os.getpid()), **owner}
    stale = None
    if path.exists():
        try:
            prev = json.loads(path.read_text())
        except (OSError, ValueError):
            prev = {}
        if prev.get("pid") == me["pid"] and prev.get("host") == me["host"] and prev.get("started") in (None, me["started"]):
            stale = None
        elif prev.get("host") == me["host"] and _owner_alive(prev):
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
