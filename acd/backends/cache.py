"""The request cache: successful model results keyed by what was asked, shared across runs.

key = sha256(canonical JSON of {model, revision, messages with media replaced by media_key digests, params}).
Only the rendered request counts, so after a prompt-template edit only requests whose messages changed are
re-sent; a new model revision or different generation params are new keys. Secrets are never part of a
request's identity (the key is built from these fields only).

Storage: one SQLite file in WAL mode (default ~/.cache/acd/requests/requests.sqlite, or the recipe's
`cache_dir`, or $ACD_CACHE_DIR). WAL lets many processes read while one writes; busy_timeout makes
concurrent writers queue instead of failing; INSERT OR IGNORE makes a race between two processes that
generated the same request harmless. A WITHOUT ROWID table keyed by the digest stays fast at 300k+ rows.
"""
from __future__ import annotations

import hashlib
import inspect
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable

import orjson

from acd.backends.base import GenRequest, GenResult

_CHUNK = 500  # keys per SELECT ... IN (...): below SQLite's variable limit


def default_cache_dir() -> Path:
    return Path(os.environ.get("ACD_CACHE_DIR") or Path.home() / ".cache" / "acd" / "requests")


def request_key(model: str, revision: str, messages: list[dict], params: dict[str, Any]) -> str:
    from acd.prompts import canonical_messages

    blob = orjson.dumps({"model": model, "revision": revision or "", "messages": canonical_messages(messages),
                         "params": params or {}}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(blob).hexdigest()


class RequestCache:
    def __init__(self, cache_dir: str | Path | None = None):
        self.dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "requests.sqlite"
        self._lock = threading.Lock()  # one connection, used from the caller's and the backend's threads
        self._db = sqlite3.connect(self.path, timeout=60.0, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout=60000")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
        self._db.execute("CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, value BLOB NOT NULL, "
                         "created REAL NOT NULL) WITHOUT ROWID")

    def __getstate__(self):  # travels to Dask/Prefect workers as its directory; reconnects there
        return {"dir": str(self.dir)}

    def __setstate__(self, state):
        self.__init__(state["dir"])

    def get_many(self, keys: Iterable[str]) -> dict[str, dict]:
        keys = list(dict.fromkeys(keys))
        out: dict[str, dict] = {}
        with self._lock:
            for i in range(0, len(keys), _CHUNK):
                chunk = keys[i : i + _CHUNK]
                q = f"SELECT key, value FROM entries WHERE key IN ({','.join('?' * len(chunk))})"
                out.update((k, orjson.loads(v)) for k, v in self._db.execute(q, chunk))
        return out

    def get(self, key: str) -> dict | None:
        return self.get_many([key]).get(key)

    def put_many(self, items: Iterable[tuple[str, dict]]) -> None:
        rows = [(k, orjson.dumps(v), time.time()) for k, v in items]
        if not rows:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR IGNORE INTO entries (key, value, created) VALUES (?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM entries").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class CachedBackend:
    """Any backend with the request cache in front: hits come back with cached=True and are never sent;
    identical requests within a batch are sent once; only successes are stored."""

    FLUSH_EVERY = 256

    def __init__(self, backend, cache: RequestCache):
        self.backend, self.cache = backend, cache
        self.name = backend.name
        self.stats = {"hits": 0, "misses": 0, "sent": 0}
        self._inflight: dict = {}  # request key -> future of the one send (agenerate, on the backend loop)
        self._unsaved: list[tuple[str, dict]] = []  # answers not yet written (agenerate batches its writes)
        self._flush_timer = None

    def __getattr__(self, item):  # model, model_revision, params, ... of the wrapped backend
        if item == "agenerate" and not callable(getattr(self.backend, "agenerate", None)):
            raise AttributeError(item)  # a batch-only backend (vllm) stays batch-only behind the cache
        return getattr(self.backend, item)

    def _result(self, req: GenRequest, v: dict) -> GenResult:
        return GenResult(req.request_id, "ok", text=v["text"], backend=v.get("backend", self.name),
                         model=v.get("model", ""), model_revision=v.get("model_revision", ""),
                         usage=v.get("usage") or {}, cached=True)

    async def agenerate(self, req: GenRequest) -> GenResult:
        """One request through the cache, on the backend loop: a hit is never sent; identical requests in
        flight at the same time are sent once; a success is stored as soon as it arrives (a killed build
        loses nothing it was answered)."""
        import asyncio

        if not callable(getattr(self.backend, "agenerate", None)):
            raise AttributeError("agenerate")
        k = self.key(req)
        hit = self.cache.get(k)
        if hit is not None:
            self.stats["hits"] += 1
            return self._result(req, hit)
        self.stats["misses"] += 1
        inflight = self._inflight
        if k in inflight:
            src = await asyncio.shield(inflight[k])
            return GenResult(req.request_id, src.status, text=src.text, error=src.error, backend=src.backend,
                             model=src.model, model_revision=src.model_revision, usage=dict(src.usage))
        fut = asyncio.get_running_loop().create_future()
        inflight[k] = fut
        self.stats["sent"] += 1
        try:
            res = await self.backend.agenerate(req)
            if res.status == "ok" and res.text:
                self._save_soon(k, {"text": res.text, "backend": res.backend, "model": res.model,
                                    "model_revision": res.model_revision, "usage": res.usage})
            fut.set_result(res)
            return res
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: no "never retrieved" warning when nobody else waited on it
            raise
        finally:
            inflight.pop(k, None)

    def key(self, req: GenRequest) -> str:
        from acd.prompts import ensure_rendered

        ensure_rendered(req, frames=getattr(self.backend, "video_frames", 8))
        b = self.backend
        model = b.model_for(req) if hasattr(b, "model_for") else b.model
        revision = b.revision(model) if hasattr(b, "revision") else b.model_revision
        params = b.wire_params(req) if hasattr(b, "wire_params") else dict(req.params or {})
        return request_key(model, revision, req.messages, params)

    def _save_soon(self, key: str, value: dict) -> None:
        """Answers are written in small batches (one SQLite transaction per ~0.2 s or 64 answers, not per
        answer); the generate stage calls flush() when a lot's requests are done, before it commits the lot."""
        import asyncio

        self._unsaved.append((key, value))
        if len(self._unsaved) >= 64:
            self.flush()
        elif self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(0.2, self.flush)

    def flush(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        batch, self._unsaved = self._unsaved, []
        self.cache.put_many(batch)

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        keys = [self.key(r) for r in requests]
        hits = self.cache.get_many(keys)
        results: list[GenResult | None] = [None] * len(requests)
        first_of: dict[str, int] = {}  # key -> index of the one request actually sent
        to_send: list[int] = []
        for i, (req, k) in enumerate(zip(requests, keys)):
            if k in hits:
                v = hits[k]
                results[i] = GenResult(req.request_id, "ok", text=v["text"], backend=v.get("backend", self.name),
                                       model=v.get("model", ""), model_revision=v.get("model_revision", ""),
                                       usage=v.get("usage") or {}, cached=True)
            elif k not in first_of:
                first_of[k] = i
                to_send.append(i)
        n_hits = sum(1 for k in keys if k in hits)
        self.stats["hits"] += n_hits
        self.stats["misses"] += len(requests) - n_hits
        self.stats["sent"] += len(to_send)

        pending: list[tuple[str, dict]] = []

        def store(j: int, res: GenResult) -> None:  # j indexes the sent sub-batch
            if res.status == "ok" and res.text:
                pending.append((keys[to_send[j]], {"text": res.text, "backend": res.backend, "model": res.model,
                                                   "model_revision": res.model_revision, "usage": res.usage}))
                if len(pending) >= self.FLUSH_EVERY:  # persist progress while a long batch is still running
                    batch = pending[:]
                    pending.clear()
                    self.cache.put_many(batch)

        sub = [requests[i] for i in to_send]
        if sub:
            if "on_result" in inspect.signature(self.backend.generate).parameters:
                out = self.backend.generate(sub, on_result=store)
            else:
                out = self.backend.generate(sub)
                by_id = {r.request_id: r for r in out}
                out = [by_id.get(r.request_id) or GenResult(r.request_id, "failed", error="missing_result")
                       for r in sub]
                for j, res in enumerate(out):
                    store(j, res)
            self.cache.put_many(pending)
            for i, res in zip(to_send, out):
                results[i] = res
        for i, (req, k) in enumerate(zip(requests, keys)):
            if results[i] is None:  # a duplicate of a request sent in this batch: share its result
                src = results[first_of[k]]
                results[i] = GenResult(req.request_id, src.status, text=src.text, error=src.error, backend=src.backend,
                                       model=src.model, model_revision=src.model_revision, usage=dict(src.usage),
                                       cached=src.cached)
        return results  # type: ignore[return-value]
