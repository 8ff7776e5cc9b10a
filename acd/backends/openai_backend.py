"""The `openai` backend: any OpenAI-compatible /v1/chat/completions endpoint (OpenAI, vllm serve, SGLang, TGI).

Recipe config (the `backend:` mapping)::

    name: openai
    endpoints:                      # one or more; requests go to the one with the least in-flight load
      - {base_url: http://127.0.0.1:8000/v1, api_key_env: OPENAI_API_KEY, max_in_flight: 64}
    models: {instruct: m, chosen: m, rejected: m2, judge: m}   # or `model: m` for every role;
                                    # "rejected:<strategy>" overrides one strategy (e.g. weak_model)
    model_revision: ""              # or {model: revision}; else what /v1/models reports, else ""
    rpm: 3000                       # requests per minute (token bucket), optional
    tpm: 2000000                    # tokens per minute (prompt estimate + max_tokens), optional
    timeout_s: 120
    max_retries: 5                  # for 5xx, timeouts, malformed/empty/cut-off replies
    max_rate_limit_retries: 30      # for 429s (they say "later", not "broken")
    params: {temperature: 0.7, max_tokens: 512}
    video_frames: 8

Secrets: the key is read from the environment variable named by `api_key_env` (or the Prefect Secret
block named by `api_key_secret`); it never enters the config, logs, provenance or cache keys.

`generate()` is synchronous: it runs its own event loop (in a helper thread if the caller already has
one), so stage code stays plain. One request never fails the batch: after its retries it comes back with
status="failed" and a reason ("http_500", "timeout", "malformed_json", "empty_choices", "length_cutoff",
"http_429", "connect_error", "http_400: ...").
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import httpx
import orjson

from acd.backends.base import GenRequest, GenResult, register
from acd.backends.pacing import Backoff, TokenBucket, retry_after_seconds

log = logging.getLogger("acd.backends.openai")

# Parameters an OpenAI-compatible server understands; anything else in GenRequest.params (e.g. the
# stage's "attempt") is ours and is translated or dropped, never sent.
WIRE_PARAMS = {"temperature", "top_p", "max_tokens", "max_completion_tokens", "seed", "stop", "presence_penalty",
               "frequency_penalty", "response_format", "n", "logit_bias", "top_k", "repetition_penalty"}
SHARD_CONNECTIONS = 8  # connections per httpx client (see _run)
RETRYABLE_STATUS = {408, 409, 425, 500, 502, 503, 504}


@dataclass
class Endpoint:
    base_url: str
    max_in_flight: int
    api_key: str | None = field(default=None, repr=False)  # never printed
    in_flight: int = 0
    down_until: float = 0.0
    failures: int = 0
    sent: int = 0
    shard_load: list = field(default_factory=list, repr=False)  # in-flight per client shard


def _resolve_key(spec: dict) -> str | None:
    if spec.get("api_key_secret"):
        from prefect.blocks.system import Secret  # lazy: the engine works without a Prefect server

        return Secret.load(spec["api_key_secret"]).get()
    env = spec.get("api_key_env")
    if env:
        value = os.environ.get(env)
        if not value:
            raise ValueError(f"openai backend: environment variable {env} (api_key_env) is not set")
        return value
    return None


class OpenAIBackend:
    name = "openai"

    def __init__(self, config: dict[str, Any]):
        specs = config.get("endpoints") or [{k: config[k] for k in ("base_url", "api_key_env", "api_key_secret",
                                                                    "max_in_flight") if k in config}]
        if not specs or not specs[0].get("base_url"):
            raise ValueError("openai backend: needs endpoints: [{base_url: ...}] (or base_url)")
        self.endpoints = [Endpoint(base_url=s["base_url"].rstrip("/"), max_in_flight=int(s.get("max_in_flight", 64)),
                                   api_key=_resolve_key(s)) for s in specs]
        models = dict(config.get("models") or {})
        default = config.get("model") or models.get("chosen") or next(iter(models.values()), None)
        if not default:
            raise ValueError("openai backend: needs `model:` or `models: {role: model}`")
        self.models = {r: models.get(r, default) for r in ("instruct", "chosen", "rejected", "judge")}
        self.models.update({k: v for k, v in models.items() if ":" in k})
        self.model = self.models["chosen"]
        rev = config.get("model_revision")
        self._revisions: dict[str, str] = dict(rev) if isinstance(rev, dict) else (
            {m: rev for m in set(self.models.values())} if rev else {})
        self.params: dict[str, Any] = dict(config.get("params") or {})
        self.timeout_s = float(config.get("timeout_s", 120))
        self.max_retries = int(config.get("max_retries", 5))
        self.max_rate_limit_retries = int(config.get("max_rate_limit_retries", 30))
        self.rpm, self.tpm = config.get("rpm"), config.get("tpm")
        self.video_frames = int(config.get("video_frames", 8))
        self.backoff_base = float(config.get("backoff_base_s", 0.5))
        self.backoff_cap = float(config.get("backoff_cap_s", 30.0))
        self.seed = int(config.get("seed", 0))
        self._discovered = False

    @property
    def model_revision(self) -> str:
        return self.revision(self.model)

    # --- what a request is (the cache keys on exactly this) ---------------------------------------------
    def model_for(self, req: GenRequest) -> str:
        strategy = (req.pair or {}).get("rejection_strategy")
        if req.role == "rejected" and strategy and f"rejected:{strategy}" in self.models:
            return self.models[f"rejected:{strategy}"]
        return self.models.get(req.role, self.model)

    def wire_params(self, req: GenRequest) -> dict[str, Any]:
        params = {**self.params, **{k: v for k, v in (req.params or {}).items() if k in WIRE_PARAMS}}
        attempt = int((req.params or {}).get("attempt", 0) or 0)
        if attempt:  # a regeneration must be a different request (different seed), not a cache hit
            params["seed"] = int(params.get("seed", 0)) + attempt
        return params

    def revision(self, model: str) -> str:
        if model not in self._revisions and not self._discovered:
            self._discover_revisions()
        return self._revisions.get(model, "")

    def _discover_revisions(self) -> None:
        """Ask /v1/models once for revisions the config does not pin (vLLM/OpenAI may report none)."""
        self._discovered = True
        for ep in self.endpoints:
            try:
                headers = {"Authorization": f"Bearer {ep.api_key}"} if ep.api_key else {}
                data = httpx.get(ep.base_url + "/models", headers=headers, timeout=min(10.0, self.timeout_s)).json()
            except (httpx.HTTPError, ValueError) as exc:
                log.warning("could not list models at %s: %s", ep.base_url, type(exc).__name__)
                continue
            for m in data.get("data") or []:
                rev = m.get("revision") or m.get("model_revision")
                if m.get("id") and rev:
                    self._revisions.setdefault(m["id"], str(rev))

    # --- the batch interface --------------------------------------------------------------------------
    def generate(self, requests: list[GenRequest],
                 on_result: Callable[[int, GenResult], None] | None = None) -> list[GenResult]:
        """Run every request; one result per request, in input order. `on_result(i, result)` is called as
        each finishes (the cache uses it to persist progress while a long batch is still running)."""
        if not requests:
            return []
        for m in {self.model_for(r) for r in requests}:
            self.revision(m)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._run(requests, on_result))
        with concurrent.futures.ThreadPoolExecutor(1) as pool:  # called from async code: own loop, own thread
            return pool.submit(asyncio.run, self._run(requests, on_result)).result()

    async def _run(self, requests, on_result) -> list[GenResult]:
        from acd.prompts import ensure_rendered

        self._rpm = TokenBucket(float(self.rpm)) if self.rpm else None
        self._tpm = TokenBucket(float(self.tpm)) if self.tpm else None
        self._backoff = Backoff(self.backoff_base, self.backoff_cap, self.seed)
        self._cond = asyncio.Condition()
        self._rr = 0
        timeout = httpx.Timeout(self.timeout_s, connect=min(10.0, self.timeout_s))
        self._clients = {}
        for ep in self.endpoints:
            ep.in_flight = 0
            headers = {"Content-Type": "application/json"}
            if ep.api_key:
                headers["Authorization"] = f"Bearer {ep.api_key}"
            # httpcore's pool scans every connection on each request (O(pool) per call, O(n^2) per batch);
            # at 128+ connections that costs more CPU than the HTTP itself. Small pools, many clients.
            n_shards = -(-ep.max_in_flight // SHARD_CONNECTIONS)
            per = -(-ep.max_in_flight // n_shards)
            limits = httpx.Limits(max_connections=per, max_keepalive_connections=per)
            self._clients[ep.base_url] = [httpx.AsyncClient(timeout=timeout, limits=limits, headers=headers)
                                          for _ in range(n_shards)]
            ep.shard_load = [0] * n_shards
        results: list[GenResult | None] = [None] * len(requests)
        todo = iter(enumerate(requests))

        async def worker():
            for i, req in todo:  # a shared iterator: each item is taken by exactly one worker
                try:
                    ensure_rendered(req, frames=self.video_frames)
                    res = await self._one(req)
                except Exception as exc:  # noqa: BLE001 - one bad item must never sink the batch
                    res = GenResult(req.request_id, "failed", error=f"client_error: {type(exc).__name__}: {exc}"[:300],
                                    backend=self.name, model=self.model_for(req))
                results[i] = res
                if on_result is not None:
                    try:
                        on_result(i, res)
                    except Exception:  # noqa: BLE001 - a cache write error must not lose the batch
                        log.exception("on_result callback failed for %s", req.request_id)

        capacity = sum(ep.max_in_flight for ep in self.endpoints)
        # More workers than slots: a worker sleeping in backoff holds no slot, so others keep slots busy.
        n_workers = min(len(requests), capacity * 2)
        try:
            await asyncio.gather(*(worker() for _ in range(n_workers)))
        finally:
            await asyncio.gather(*(c.aclose() for cs in self._clients.values() for c in cs))
        return results  # type: ignore[return-value]

    async def _acquire(self) -> Endpoint:
        """The endpoint with the least in-flight load (relative to its bound), waiting for a free slot."""
        async with self._cond:
            while True:
                now = time.monotonic()
                healthy = [e for e in self.endpoints if e.down_until <= now] or self.endpoints
                room = [e for e in healthy if e.in_flight < e.max_in_flight]
                if room:
                    self._rr += 1  # rotate the tie-break so equal endpoints share evenly
                    n = len(room)
                    ep = min((room[(self._rr + k) % n] for k in range(n)),
                             key=lambda e: e.in_flight / e.max_in_flight)
                    ep.in_flight += 1
                    ep.sent += 1
                    shard = min(range(len(ep.shard_load)), key=ep.shard_load.__getitem__)
                    ep.shard_load[shard] += 1
                    return ep, shard
                await self._cond.wait()

    async def _release(self, ep: Endpoint, shard: int) -> None:
        async with self._cond:
            ep.in_flight -= 1
            ep.shard_load[shard] -= 1
            self._cond.notify()

    async def _one(self, req: GenRequest) -> GenResult:
        from acd.prompts import wire_messages

        model = self.model_for(req)
        params = self.wire_params(req)
        body = orjson.dumps({"model": model, "messages": wire_messages(req.messages), **params})
        est_tokens = _estimate_tokens(req.messages) + int(params.get("max_tokens") or params.get("max_completion_tokens") or 256)
        errors = rate_limited = 0
        t0 = time.monotonic()
        while True:
            if self._rpm:
                await self._rpm.acquire(1)
            if self._tpm:
                await self._tpm.acquire(est_tokens)
            ep, shard = await self._acquire()
            retry_after = None
            try:
                resp = await self._clients[ep.base_url][shard].post(ep.base_url + "/chat/completions", content=body)
                reason, text, usage, retry_after = _classify(resp)
                ep.failures = 0
            except httpx.TimeoutException:
                reason, text, usage = "timeout", None, {}
            except httpx.TransportError as exc:
                reason, text, usage = "connect_error", None, {}
                ep.failures += 1  # a dead endpoint fails fast; keep traffic off it for a while
                ep.down_until = time.monotonic() + min(30.0, 0.5 * 2 ** min(ep.failures, 6))
                log.debug("endpoint %s: %s", ep.base_url, type(exc).__name__)
            finally:
                await self._release(ep, shard)
            if self._tpm and usage.get("total_tokens"):
                self._tpm.adjust(usage["total_tokens"] - est_tokens)
            if reason is None:
                return GenResult(req.request_id, "ok", text=text, backend=self.name, model=model,
                                 model_revision=self.revision(model),
                                 usage={**usage, "attempts": errors + rate_limited + 1,
                                        "latency_s": round(time.monotonic() - t0, 4)})
            if reason == "http_429":
                rate_limited += 1
                if rate_limited > self.max_rate_limit_retries:
                    return self._failed(req, model, reason, errors + rate_limited)
                # Honour the server's Retry-After; without one, back off like any other failure.
                await asyncio.sleep(retry_after if retry_after is not None else self._backoff.delay(rate_limited))
                continue
            if reason.startswith("http_4") and not reason.startswith(("http_408", "http_409", "http_425")):
                return self._failed(req, model, reason, errors + rate_limited + 1)  # our request is wrong: no retry
            errors += 1
            if errors > self.max_retries:
                return self._failed(req, model, reason, errors + rate_limited)
            await asyncio.sleep(self._backoff.delay(errors))

    def _failed(self, req: GenRequest, model: str, reason: str, attempts: int) -> GenResult:
        return GenResult(req.request_id, "failed", error=reason, backend=self.name, model=model,
                         model_revision=self.revision(model), usage={"attempts": attempts})


def _classify(resp: httpx.Response) -> tuple[str | None, str | None, dict, float | None]:
    """(failure reason or None, text, usage, retry_after) for one HTTP response."""
    if resp.status_code == 429:
        return "http_429", None, {}, retry_after_seconds(resp.headers.get("retry-after"))
    if resp.status_code >= 400:
        detail = ""
        if 400 <= resp.status_code < 500 and resp.status_code not in RETRYABLE_STATUS:
            detail = ": " + resp.text[:200].replace("\n", " ")
        return f"http_{resp.status_code}{detail}", None, {}, None
    try:
        data = orjson.loads(resp.content)
    except orjson.JSONDecodeError:
        return "malformed_json", None, {}, None
    if not isinstance(data, dict):
        return "malformed_json", None, {}, None
    choices = data.get("choices")
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    if not choices:
        return "empty_choices", None, usage, None
    choice = choices[0] if isinstance(choices[0], dict) else {}
    if choice.get("finish_reason") == "length":
        return "length_cutoff", None, usage, None
    text = (choice.get("message") or {}).get("content")
    if not isinstance(text, str) or not text.strip():
        return "empty_content", None, usage, None
    return None, text, usage, None


def _estimate_tokens(messages: list[dict]) -> int:
    """Rough prompt size for tokens/min pacing: ~4 characters per token of text, a flat cost per media part."""
    n = 0
    for m in messages:
        c = m.get("content")
        if isinstance(c, str):
            n += len(c) // 4
        else:
            for p in c or []:
                n += len(p.get("text", "")) // 4 if p.get("type") == "text" else 256
    return max(1, n)


@register("openai")
def make_openai_backend(config: dict[str, Any]) -> OpenAIBackend:
    return OpenAIBackend(config)
