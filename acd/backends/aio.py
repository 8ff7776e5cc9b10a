"""One background asyncio loop per process, shared by every model backend.

Lots run on threads (the CLI's lot threads, Prefect's task threads); their requests all go through this one
loop, so an endpoint's in-flight limit and rate pacing hold for the whole process, whichever lot a request
belongs to. Code that is already on the loop awaits backends directly; plain code calls `run(coro)`.
"""
from __future__ import annotations

import asyncio
import atexit
import threading
from typing import Any, Awaitable, Callable, Coroutine, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_closers: list[Callable[[], Awaitable[Any]]] = []


def on_exit(closer: Callable[[], Awaitable[Any]]) -> None:
    """Register an async cleanup (a backend's HTTP sessions) to run on the loop before the process exits:
    a daemon loop thread killed at interpreter shutdown would leave them to noisy finalisers."""
    _closers.append(closer)


@atexit.register
def _shutdown() -> None:
    global _loop
    loop_, closers = _loop, list(_closers)
    _closers.clear()
    if loop_ is None or not loop_.is_running():
        return

    async def close_all() -> None:
        await asyncio.gather(*(c() for c in closers), return_exceptions=True)

    try:
        asyncio.run_coroutine_threadsafe(close_all(), loop_).result(timeout=5)
    except Exception:  # noqa: BLE001 - best effort at exit
        pass
    loop_.call_soon_threadsafe(loop_.stop)


def loop() -> asyncio.AbstractEventLoop:
    """The process's backend loop, started on first use (daemon thread: it never keeps a process alive)."""
    global _loop, _thread
    with _lock:
        if _loop is None or not _thread or not _thread.is_alive():
            _loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(_loop)
                _loop.call_soon(ready.set)
                _loop.run_forever()

            _thread = threading.Thread(target=run, name="acd-backend-loop", daemon=True)
            _thread.start()
            ready.wait()
        return _loop


def drain(timeout: float) -> bool:
    """Wait, up to `timeout` seconds, until no task is left on the backend loop, then past the request cache's
    write-behind delay (0.2 s): requests still on the wire when a build stops (its budget reached) finish,
    and their answers are stored, instead of dying with the process and being paid for again by the rerun.
    Returns whether the loop went idle."""
    if _loop is None or not _thread or not _thread.is_alive() or on_loop_thread():
        return True

    async def idle() -> None:
        me = asyncio.current_task()
        while any(t is not me and not t.done() for t in asyncio.all_tasks()):
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)

    try:
        asyncio.run_coroutine_threadsafe(idle(), _loop).result(timeout=timeout)
        return True
    except Exception:  # noqa: BLE001 - a timeout: what is still out is lost, as before
        return False


def on_loop_thread() -> bool:
    return _thread is not None and threading.current_thread() is _thread


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on the backend loop and wait for it (from any thread but the loop's own)."""
    if on_loop_thread():
        coro.close()
        raise RuntimeError("aio.run() called on the backend loop itself; await the coroutine instead")
    return asyncio.run_coroutine_threadsafe(coro, loop()).result()
