"""Local ports, for the services `make up` starts (Prefect, PostgreSQL)."""
from __future__ import annotations

import socket


def port_free(port: int) -> bool:
    """Nothing listens on the port. SO_REUSEADDR as the server itself binds (uvicorn): the TIME_WAIT sockets
    a just-stopped server leaves for ~60 s do not count as taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
