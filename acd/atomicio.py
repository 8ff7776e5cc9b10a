"""Atomic file writes, one way for the whole project, and the sweep of what dead writers left behind.

Every file is written to a hidden temp name beside its target and renamed into place (`os.replace`), so a
reader (or a crash) never sees half a file. Temp names are unique per writer and per call:

    .<name>.<pid>@<host>.<random>.tmp

so two processes or threads writing the same target (two Dask workers storing the same media item) never
collide, and a later run can tell whose temp file it is: `sweep_dead_temps` removes temp files whose
writer is gone (its PID is dead on this host, or, for another host's writer, the file is older than an
hour), which is what a SIGKILL mid-write leaves behind.
"""
from __future__ import annotations

import os
import re
import secrets
import socket
import time
from pathlib import Path
from typing import Callable

_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
# Also matches the pre-helper names (.<name>.<pid>.tmp), so debris from older builds is swept too.
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)(?:@(?P<host>[A-Za-z0-9-]+)\.[0-9a-f]{8})?\.tmp$")
# A writer on another host is assumed dead when its temp file has not changed for this long.
FOREIGN_TEMP_MAX_AGE_S = 3600.0


def tmp_path(path: str | Path) -> Path:
    """A fresh hidden temp name beside `path` (unique per host, process and call)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}@{_HOST}.{secrets.token_hex(4)}.tmp")


def write_via(path: str | Path, produce: Callable[[Path], None]) -> Path:
    """Let `produce(tmp)` write a temp file, then rename it onto `path`; the temp file never outlives a failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(path)
    try:
        produce(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    return write_via(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def _pid_alive(pid: int) -> bool:
    from acd.runlock import pid_alive

    return pid_alive(pid)


def is_dead_temp(path: Path, now: float | None = None) -> bool:
    """A temp file (our naming) whose writer is gone."""
    m = _TEMP.match(path.name)
    if not m:
        return False
    host = m.group("host")
    if host in (None, _HOST):
        return not _pid_alive(int(m.group("pid")))
    try:
        age = (now or time.time()) - path.stat().st_mtime
    except FileNotFoundError:
        return False
    return age > FOREIGN_TEMP_MAX_AGE_S


def sweep_dead_temps(*roots: str | Path) -> list[Path]:
    """Remove dead writers' temp files (and temp directories) under `roots`; returns what was removed."""
    import shutil

    removed: list[Path] = []
    now = time.time()
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            continue
        for dirpath, dirs, files in os.walk(root):
            for name in list(dirs):
                p = Path(dirpath) / name
                if is_dead_temp(p, now):
                    shutil.rmtree(p, ignore_errors=True)
                    dirs.remove(name)
                    removed.append(p)
            for name in files:
                if name.endswith(".tmp") and name.startswith("."):
                    p = Path(dirpath) / name
                    if is_dead_temp(p, now):
                        p.unlink(missing_ok=True)
                        removed.append(p)
    return removed
