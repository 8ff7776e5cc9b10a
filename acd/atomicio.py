"""Atomic file writes, one way for the whole project, and the sweep of what dead writers left behind.

Every file is written to a hidden temp name beside its target and renamed into place (`os.replace`), so a
reader (or a crash) never sees half a file. Temp names are unique per writer and per call:

    .<name>.<pid>@<host>.<token>.tmp        <token>: 8 lowercase hex digits (random; may be all digits)

so two processes or threads writing the same target (two Dask workers storing the same media item) never
collide, and a later run can tell whose temp file it is: `sweep_dead_temps` removes temp files whose
writer is gone (its PID is dead on this host, or, for another host's writer, the file is older than an
hour), which is what a SIGKILL mid-write leaves behind.

Older builds named temp files `.<name>.<pid>.tmp` and (one writer) `.<name>.<pid>.<thread id>.tmp`; a
killed writer of such a build can have left them on disk, so they are swept too. A name parses in exactly
one way (`parse_temp_name`): <name> may hold anything (dots, '@', digits, '.tmp'), and the three forms are
told apart by their last components alone, never by guessing how much of the name is <name>:

    current         ... .<digits>@<host>.<8 hex>.tmp       the part before the token holds '@'
    legacy          ... .<1-7 digits>.tmp                  a PID: at most 7 digits (Linux caps PIDs at 2**22)
    legacy thread   ... .<1-7 digits>.<8+ digits>.tmp      a thread id: a pointer, far more than 7 digits

The current form's token is exactly 8 characters and the legacy PID at most 7, so a token that happens to be
all digits (`.x.png.4762@vm.48557357.tmp`) is never read as the legacy name of PID 48557357 (the old single
regex did that, and swept a live writer's file).
"""
from __future__ import annotations

import os
import re
import secrets
import socket
import time
from pathlib import Path
from typing import Callable, NamedTuple

_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
TOKEN_LEN = 8  # hex digits; must stay longer than LEGACY_PID_MAX_DIGITS (that is what keeps the forms apart)
LEGACY_PID_MAX_DIGITS = 7  # PID_MAX_LIMIT is 2**22 = 4194304 on Linux (99999 on macOS and the BSDs)
# Each form anchored at both ends (fullmatch) and DOTALL: a file name may hold any character but '/' and NUL.
_CURRENT = re.compile(r"\.(?P<name>.+)\.(?P<pid>[0-9]+)@(?P<host>[A-Za-z0-9-]+)\.(?P<token>[0-9a-f]{%d})\.tmp"
                      % TOKEN_LEN, re.DOTALL)
_LEGACY = re.compile(r"\.(?P<name>.+)\.(?P<pid>[0-9]{1,%d})\.tmp" % LEGACY_PID_MAX_DIGITS, re.DOTALL)
_LEGACY_THREAD = re.compile(r"\.(?P<name>.+)\.(?P<pid>[0-9]{1,%d})\.(?P<tid>[0-9]{%d,})\.tmp"
                            % (LEGACY_PID_MAX_DIGITS, LEGACY_PID_MAX_DIGITS + 1), re.DOTALL)
# A writer on another host is assumed dead when its temp file has not changed for this long.
FOREIGN_TEMP_MAX_AGE_S = 3600.0


class TempName(NamedTuple):
    """Whose temp file a name is: the target's name and the writer (host and token are None for legacy names,
    which were only ever written on the host that sweeps them)."""

    name: str
    pid: int
    host: str | None
    token: str | None


def temp_name(name: str, pid: int, host: str, token: str) -> str:
    """The temp file name of writer (pid, host) for target `name`, with `token` (TOKEN_LEN lowercase hex)."""
    if not re.fullmatch(r"[0-9a-f]{%d}" % TOKEN_LEN, token) or not re.fullmatch(r"[A-Za-z0-9-]+", host) \
            or pid <= 0 or not name or "/" in name:
        raise ValueError(f"not a temp name: {name!r}, {pid!r}, {host!r}, {token!r}")
    return f".{name}.{pid}@{host}.{token}.tmp"


def parse_temp_name(name: str) -> TempName | None:
    """The writer of temp file `name` (any of the forms above), or None when it is not one of our temp names.
    The forms are disjoint, so at most one of these matches."""
    m = _CURRENT.fullmatch(name)
    if m:
        return TempName(m["name"], int(m["pid"]), m["host"], m["token"])
    m = _LEGACY_THREAD.fullmatch(name) or _LEGACY.fullmatch(name)
    if m:
        return TempName(m["name"], int(m["pid"]), None, None)
    return None


def tmp_path(path: str | Path) -> Path:
    """A fresh hidden temp name beside `path` (unique per host, process and call)."""
    path = Path(path)
    return path.with_name(temp_name(path.name, os.getpid(), _HOST, secrets.token_hex(TOKEN_LEN // 2)))


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

    try:
        return pid_alive(pid)
    except OverflowError:  # beyond pid_t: no process has it
        return False


def is_dead_temp(path: Path, now: float | None = None) -> bool:
    """A temp file (our naming) whose writer is gone."""
    t = parse_temp_name(path.name)
    if t is None:
        return False
    if t.host in (None, _HOST):
        return not _pid_alive(t.pid)
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
