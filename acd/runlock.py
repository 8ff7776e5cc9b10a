"""One driver per run directory: an OS lock on <run>/driver.lock, whose content names the holder.

The lock is `flock(LOCK_EX | LOCK_NB)` on an open file kept for the driver's lifetime: the kernel decides
who gets it, so two drivers started at the same instant can never both proceed (the earlier read-check-
write scheme let both through in 41 of 200 simultaneous starts), and a driver killed with SIGKILL loses
the lock with its file descriptors — no PID guessing. The file's content is the holder's record (pid,
host, since, flow run id); a clean release removes the file. So when a driver gets the lock and finds a record
there, its owner died holding it: acquire returns that stale record, and the flow marks the orphaned flow
run Crashed instead of leaving it RUNNING forever. A live owner is never overridden: the second driver
gets RunLocked("... locked by pid N on host since ...") at once.

A driver that opened the file just before a release unlinked it would lock a dead inode: acquire checks
that the file it locked is still the one at the path, and retries otherwise.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

LOCK_NAME = "driver.lock"


class RunLocked(RuntimeError):
    pass


# run dir (resolved) -> open fd holding the lock in this process (re-entrant: a flow that calls into the
# CLI's driver in the same process must not lock itself out).
_HELD: dict[str, int] = {}


def pid_alive(pid: int) -> bool:
    """A running process on this host. A zombie (killed, not yet reaped: e.g. a SIGKILLed process whose
    parent has not waited for it) answers kill(pid, 0) but is dead."""
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


def _read_record(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    try:
        rec = json.loads(data.decode("utf-8")) if data.strip() else {}
    except (UnicodeDecodeError, ValueError):
        rec = {"unreadable": data[:200].decode("utf-8", "replace")}
    return rec if isinstance(rec, dict) else {}


def _write_record(fd: int, rec: dict | None) -> None:
    os.ftruncate(fd, 0)
    if rec:
        os.pwrite(fd, json.dumps(rec, sort_keys=True).encode("utf-8"), 0)
    os.fsync(fd)


def _describe(rec: dict) -> str:
    since = rec.get("since")
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(since)) if isinstance(since, (int, float)) else "?"
    who = f"pid {rec.get('pid', '?')} on {rec.get('host', '?')}"
    run = f", flow run {rec['flow_run_id']}" if rec.get("flow_run_id") else f" ({rec.get('driver', 'driver')})"
    return f"{who}{run} since {when}"


def acquire(run_dir: str | Path, **owner) -> dict | None:
    """Take the run directory's lock (non-blocking). Returns the record a dead owner left behind, else None.

    Raises RunLocked, naming the holder, when another live driver holds it.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    key = str(path.resolve())
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": round(time.time(), 3), **owner}
    if key in _HELD:  # this process already holds it: refresh the record (e.g. a new flow run id)
        _write_record(_HELD[key], me)
        return None
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_record(fd)
            os.close(fd)
            raise RunLocked(f"{run_dir} is locked by {_describe(holder)}") from None
        except BaseException:
            os.close(fd)
            raise
        # A clean release unlinks the file: if it went (or was replaced) between our open and our flock,
        # we hold a lock on a dead inode; start again on the current file.
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    stale = _read_record(fd) or None
    _write_record(fd, me)
    _HELD[key] = fd
    return stale


def held(run_dir: str | Path) -> bool:
    """Whether this process holds the run directory's lock."""
    return str((Path(run_dir) / LOCK_NAME).resolve()) in _HELD


def release(run_dir: str | Path) -> None:
    """A clean end: remove the lock file (the next driver finds nothing stale), then drop the lock."""
    key = str((Path(run_dir) / LOCK_NAME).resolve())
    fd = _HELD.pop(key, None)
    if fd is None:
        return
    try:
        Path(key).unlink(missing_ok=True)  # while still locked: nobody can take the old inode in between
    finally:
        os.close(fd)  # closing the descriptor releases the flock
