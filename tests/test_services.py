"""`make up` / `make down` port handling (ops/services.py), without starting a Prefect server.

`make up` right after `make down` must work although the old server's connections linger in TIME_WAIT, and
`make up` never moves off the port it reports: a port held by something else is refused with a clear line.
"""
from __future__ import annotations

import socket
import time

import pytest

from ops import services


def _time_wait_port() -> int:
    """A port whose listener closed with a connection in TIME_WAIT (the server side closed first), as a
    stopped Prefect server leaves it (uvicorn's listener, like asyncio's, sets SO_REUSEADDR)."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    cli = socket.create_connection(("127.0.0.1", port))
    conn, _ = srv.accept()
    conn.close()  # the server side closes first: its end goes to TIME_WAIT
    time.sleep(0.05)
    cli.close()
    srv.close()
    return port


def test_time_wait_does_not_count_as_taken():
    port = _time_wait_port()
    with socket.socket() as plain:  # what the old probe did: without SO_REUSEADDR the bind fails
        with pytest.raises(OSError):
            plain.bind(("127.0.0.1", port))
    assert services.port_free(port)


def test_auto_port_is_the_default_even_when_taken(tmp_path):
    assert services._pick_port("auto", tmp_path) == services.DEFAULT_PORT
    assert services._pick_port("4311", tmp_path) == 4311


def test_port_held_by_another_program_is_refused_clearly(tmp_path):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        assert not services.port_free(port)
        with pytest.raises(SystemExit, match=rf"port {port} is taken by something that is not a Prefect server.*"
                                             r"make up PREFECT_PORT=<port>"):
            services.up(port=port, worker=False, do_deploy=False, quiet=True, home=tmp_path)
    assert not (tmp_path / "server.pid").exists()
