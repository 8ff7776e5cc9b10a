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
    timeout_s: 120                  # the ceiling; once latencies are known a request times out at
    min_timeout_s: 2.0              #   max(min_timeout_s, 3 x p99 latency) (a hung request costs seconds)
    hedge: true                     # a request slower than 1.5 x p99 is sent again on the next slot; first wins
    max_retries: 5                  # for 5xx, timeouts, malformed/empty/cut-off replies
    max_rate_limit_retries: 30      # for 429s (they say "later", not "broken")
    params: {temperature: 0.7, max_tokens: 512}
    video_frames: 8

How it is driven: every request is a coroutine on the process's backend loop (acd.backends.aio), so all lots
a process has in flight share each endpoint's slots. Slots go to waiting requests by priority (the lot that
started first), which finishes lots one after another instead of all at once at the end. `generate(list)` is
the synchronous batch form of the same thing.

Endpoint health: a 401/403 takes the endpoint out (its key is wrong there; other endpoints go on serving the
same requests); an endpoint that refuses connections for `down_after_s` (5 s; 60 s once it has served) is
taken out too. With no endpoint left, every waiting request raises BackendUnavailable with one line naming
each endpoint, what it answered and what to fix.

Secrets: the key is read from the environment variable named by `api_key_env` (or the Prefect Secret
block named by `api_key_secret`); it never enters the config, logs, provenance, cache keys or failure reasons
(server bodies are never copied into reasons: status and error code only, and any configured key is masked).
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import aiohttp
import httpx
import orjson

from acd import errors, recipe_model
from acd.backends import aio
from acd.backends.base import GenRequest, GenResult, register
from acd.backends.pacing import Backoff, TokenBucket
from acd.backends.replies import Outcome, classify

log = logging.getLogger("acd.backends.openai")

# Parameters an OpenAI-compatible server understands; anything else in GenRequest.params (e.g. the
# stage's "attempt") is ours and is translated or dropped, never sent.
WIRE_PARAMS = {"temperature", "top_p", "max_tokens", "max_completion_tokens", "seed", "stop", "presence_penalty",
               "frequency_penalty", "response_format", "n", "logit_bias", "top_k", "repetition_penalty"}
AUTH_STATUS = {401: "unauthorized: check the API key", 403: "forbidden: the key has no access to this model/endpoint"}
LATENCY_SAMPLES = 32  # successes needed before timeouts and hedging follow measured latency
HEDGE_PRIORITY = float("-inf")  # a straggler's copy goes before every request waiting for its first slot
# A reply that came back broken (cut off, malformed, empty) or a request that hung: the endpoint is answering, this
# one reply went wrong; it is sent again at once instead of after a backoff that would hold its pair (and lot) back.
RETRY_AT_ONCE = ("malformed_json", "empty_choices", "empty_content", "length_cutoff", "connection_lost", "timeout")


@dataclass
class Endpoint:
    base_url: str
    max_in_flight: int
    api_key: str | None = field(default=None, repr=False)  # never printed
    key_source: str = ""  # where the key came from ("$VLLM_API_KEY"), for messages
    in_flight: int = 0
    down_until: float = 0.0
    failures: int = 0
    sent: int = 0
    served: int = 0
    refused_since: float | None = None  # start of the current run of connection failures
    disabled: str | None = None  # why this endpoint is out of rotation (auth, refused)


def _resolve_key(spec: recipe_model.Endpoint) -> str | None:
    if spec.api_key_secret:
        from prefect.blocks.system import Secret  # lazy: the engine works without a Prefect server

        return Secret.load(spec.api_key_secret).get()
    env = spec.api_key_env
    if env:
        value = os.environ.get(env)
        if not value:
            raise errors.AcdError(f"openai backend: environment variable {env} (api_key_env) is not set")
        return value
    return None


class _Latency:
    """Recent successful request latencies; quantiles recomputed every few samples (cheap on the loop)."""

    def __init__(self, size: int = 512):
        self.values: deque[float] = deque(maxlen=size)
        self._added = 0
        self._cache: dict[float, float] = {}

    def add(self, seconds: float) -> None:
        self.values.append(seconds)
        self._added += 1
        if self._added % 16 == 0:
            self._cache.clear()

    def ready(self) -> bool:
        return len(self.values) >= LATENCY_SAMPLES

    def quantile(self, q: float) -> float:
        if q not in self._cache:
            s = sorted(self.values)
            self._cache[q] = s[min(len(s) - 1, int(q * len(s)))]
        return self._cache[q]


def _endpoint_sections(section: recipe_model.OpenAIBackend) -> list[recipe_model.Endpoint]:
    """The section's endpoints: its `endpoints` list, or the single endpoint its top-level keys describe."""
    if section.endpoints:
        return list(section.endpoints)
    if not section.base_url:
        return []
    single = {"max_in_flight": section.max_in_flight} if section.max_in_flight is not None else {}  # else Endpoint's
    return [recipe_model.Endpoint(base_url=section.base_url, api_key_env=section.api_key_env,
                                  api_key_secret=section.api_key_secret, **single)]


class OpenAIBackend:
    name = "openai"
    capabilities = recipe_model.OpenAIBackend.capabilities

    def __init__(self, config: recipe_model.OpenAIBackend | Mapping[str, Any], slot_share: float = 1.0):
        """`config`: the recipe's backend section, or a mapping of it (`name` may be left out). `slot_share`:
        this process's share of each endpoint's slots and of rpm/tpm (Dask workers: 1/workers)."""
        self.section = section = config if isinstance(config, recipe_model.OpenAIBackend) else \
            recipe_model.as_section(recipe_model.OpenAIBackend, {"name": self.name, **config})
        specs = _endpoint_sections(section)
        if not specs or not specs[0].base_url:
            raise errors.AcdError("openai backend: needs endpoints: [{base_url: ...}] (or base_url)")
        share = float(slot_share)
        self.endpoints = [
            Endpoint(base_url=s.base_url.rstrip("/"),
                     max_in_flight=max(1, int(s.max_in_flight * share)),
                     api_key=_resolve_key(s),
                     key_source=(f"${s.api_key_env}" if s.api_key_env else
                                 f"Secret block {s.api_key_secret!r}" if s.api_key_secret else "no key"))
            for s in specs]
        models = dict(section.models)
        default = section.model or models.get("chosen") or next(iter(models.values()), None)
        if not default:
            raise errors.AcdError("openai backend: needs `model:` or `models: {role: model}`")
        self.models = {r: models.get(r, default) for r in ("instruct", "chosen", "rejected", "judge")}
        self.models.update({k: v for k, v in models.items() if ":" in k})
        self.model = self.models["chosen"]
        rev = section.model_revision
        self._revisions: dict[str, str] = dict(rev) if isinstance(rev, dict) else (
            {m: rev for m in set(self.models.values())} if rev else {})
        self.params: dict[str, Any] = dict(section.params)
        self.timeout_s = section.timeout_s
        self.min_timeout_s = min(self.timeout_s, section.min_timeout_s)
        self.hedge = section.hedge
        self.down_after_s = section.down_after_s
        self.max_retries = section.max_retries
        self.max_rate_limit_retries = section.max_rate_limit_retries
        self.rpm = section.rpm * share if section.rpm else None
        self.tpm = section.tpm * share if section.tpm else None
        self.video_frames = section.video_frames
        self.backoff_base = section.backoff_base_s
        self.backoff_cap = section.backoff_cap_s
        self.seed = section.seed
        self._secrets = sorted({ep.api_key for ep in self.endpoints if ep.api_key}, key=len, reverse=True)
        self._discovered = False
        self._started = False
        self._fatal: errors.BackendUnavailable | None = None
        self.latency = _Latency()
        self.stats = {"hedged": 0, "hedge_won": 0, "timeouts": 0}
        from acd.cost import Spend

        # Dollars paid (from each answer's usage) and the budget no request may pass (acd.cost); the generate
        # stage attaches the run directory's ledger, so a budget counts earlier runs of the same directory.
        self.spend = Spend(section.budget_usd, dict(section.prices))
        # mode: batch sends the same bodies as lines of Batch API files (acd.backends.batch), to the first
        # endpoint: a batch lives on one provider, its slots and pacing do not apply.
        self.batch = None
        if section.mode == "batch":
            from acd.backends.batch import BatchTransport

            ep, spec = self.endpoints[0], specs[0]
            self.batch = BatchTransport(section.batch, ep.base_url, ep.api_key, spec.api_key_env, self.max_retries)

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
        # Each pair samples with its own seed (two pairs on the same media, type and length are two samples,
        # not one request sent twice); a regeneration attempt moves it on, so it is a new request too.
        sample = int((req.params or {}).get("sample_seed", 0) or 0)
        attempt = int((req.params or {}).get("attempt", 0) or 0)
        if sample or attempt:
            params["seed"] = (int(params.get("seed", 0)) + sample + attempt) % (1 << 62)
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
            for m in data.get("data") or [] if isinstance(data, dict) else []:
                rev = m.get("revision") or m.get("model_revision")
                if m.get("id") and rev:
                    self._revisions.setdefault(m["id"], str(rev))

    def redact(self, text: str) -> str:
        """Mask every configured key in text that may reach a reason, a log line or a report."""
        for s in self._secrets:
            if s:
                text = text.replace(s, "***")
        return text

    # --- the batch interface --------------------------------------------------------------------------
    def generate(self, requests: list[GenRequest],
                 on_result: Callable[[int, GenResult], None] | None = None) -> list[GenResult]:
        """Run every request; one result per request, in input order. `on_result(i, result)` is called as
        each finishes (the cache uses it to persist progress while a long batch is still running).
        Raises BackendUnavailable when no endpoint can serve."""
        if not requests:
            return []
        for m in {self.model_for(r) for r in requests}:
            self.revision(m)
        results: list[GenResult | None] = [None] * len(requests)

        async def one(i: int, req: GenRequest) -> None:
            results[i] = res = await self.agenerate(req)
            if on_result is not None:
                try:
                    on_result(i, res)
                except Exception:  # noqa: BLE001 - a cache write error must not lose the batch
                    log.exception("on_result callback failed for %s", req.request_id)

        async def run_all() -> None:
            await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)))

        aio.run(run_all())
        return results  # type: ignore[return-value]

    async def agenerate(self, req: GenRequest) -> GenResult:
        """One request on the backend loop; never raises for the item (failed results carry the reason),
        only BackendUnavailable when no endpoint is left."""
        from acd.prompts import ensure_rendered

        self._start()
        model = self.model_for(req)
        if model not in self._revisions and not self._discovered:
            await asyncio.to_thread(self.revision, model)
        try:
            ensure_rendered(req, frames=self.video_frames)
            return await self._one(req)
        except errors.BackendUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad item must never sink the batch
            return GenResult(req.request_id, "failed", error=self.redact(f"client_error: {type(exc).__name__}")[:300],
                             backend=self.name, model=model)

    # --- on the loop -----------------------------------------------------------------------------------
    def _start(self) -> None:
        """Clients, pacing and slot queue, created once on the backend loop."""
        if self._started:
            return
        self._started = True
        self._rpm = TokenBucket(float(self.rpm)) if self.rpm else None
        self._tpm = TokenBucket(float(self.tpm)) if self.tpm else None
        self._backoff = Backoff(self.backoff_base, self.backoff_cap, self.seed)
        self._waiters: list[tuple[Any, int, asyncio.Future]] = []
        self._seq = itertools.count()
        self._rr = 0
        # aiohttp, not httpx, on the hot path: ~0.2 ms of CPU per request instead of ~1.4 ms (measured against
        # the test server on this 2-core machine), which is what lets one process keep hundreds of slots busy
        # next to the checks' CPU work. One session per endpoint; its connector holds that endpoint's slots.
        self._sessions = {}
        for ep in self.endpoints:
            headers = {"Content-Type": "application/json"}
            if ep.api_key:
                headers["Authorization"] = f"Bearer {ep.api_key}"
            connector = aiohttp.TCPConnector(limit=ep.max_in_flight, limit_per_host=0, keepalive_timeout=30)
            self._sessions[ep.base_url] = aiohttp.ClientSession(connector=connector, headers=headers,
                                                                auto_decompress=True, trust_env=False)
        aio.on_exit(self.aclose)

    def _take(self) -> Endpoint | None:
        """A free slot on the least loaded usable endpoint, or None. Raises when no endpoint is usable."""
        usable = [e for e in self.endpoints if not e.disabled]
        if not usable:
            raise self._set_fatal()
        now = time.monotonic()
        healthy = [e for e in usable if e.down_until <= now] or usable
        room = [e for e in healthy if e.in_flight < e.max_in_flight]
        if not room:
            return None
        self._rr += 1  # rotate the tie-break so equal endpoints share evenly
        n = len(room)
        ep = min((room[(self._rr + k) % n] for k in range(n)), key=lambda e: e.in_flight / e.max_in_flight)
        ep.in_flight += 1
        ep.sent += 1
        return ep

    async def _acquire(self, priority: Any) -> Endpoint:
        """A slot; waiting requests are served best priority first (then first come)."""
        if self._fatal:
            raise self._fatal
        if not self._waiters:
            slot = self._take()
            if slot:
                return slot
        fut = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._seq), fut))
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self._release(fut.result())  # granted just as we were cancelled: hand it on
            raise

    def _release(self, ep: Endpoint) -> None:
        ep.in_flight -= 1
        self._dispatch()

    def _dispatch(self) -> None:
        while self._waiters:
            if self._waiters[0][2].done():  # cancelled waiter
                heapq.heappop(self._waiters)
                continue
            try:
                slot = self._take()
            except errors.BackendUnavailable as exc:
                for _, _, fut in self._waiters:
                    if not fut.done():
                        fut.set_exception(exc)
                self._waiters.clear()
                return
            if slot is None:
                return
            heapq.heappop(self._waiters)[2].set_result(slot)

    def _set_fatal(self) -> errors.BackendUnavailable:
        if self._fatal is None:
            what = "; ".join(f"{ep.base_url} {ep.disabled}" for ep in self.endpoints)
            self._fatal = errors.BackendUnavailable(
                f"no model endpoint can serve: {what}. Fix that and rerun: finished work is kept.")
            log.error("%s", self._fatal)
        return self._fatal

    def _disable(self, ep: Endpoint, why: str) -> None:
        if ep.disabled:
            return
        ep.disabled = why
        others = [e for e in self.endpoints if not e.disabled]
        log.warning("endpoint %s taken out of rotation: %s%s", ep.base_url, why,
                    f"; {len(others)} endpoint(s) go on" if others else "")
        self._dispatch()  # wakes waiters with the fatal error when none is left

    def _attempt_timeout(self) -> float:
        if not self.latency.ready():
            return self.timeout_s
        return min(self.timeout_s, max(self.min_timeout_s, 3.0 * self.latency.quantile(0.99)))

    def _hedge_after(self) -> float | None:
        """When to send a second copy of a slow request: past 1.5 x p99 normally (about 1 request in 150 of a
        healthy endpoint, and every hung one); past the median while most slots sit idle (the build's last
        requests, where a straggler is all that keeps the run from finishing and a copy costs nothing else)."""
        if not self.hedge or not self.latency.ready():
            return None
        capacity = sum(e.max_in_flight for e in self.endpoints if not e.disabled) or 1
        if sum(e.in_flight for e in self.endpoints) < capacity // 2:
            return self.latency.quantile(0.5)
        return 1.5 * self.latency.quantile(0.99)

    async def _post(self, ep: Endpoint, body: bytes, timeout: float) -> Outcome:
        """One HTTP attempt on a slot the caller acquired; releases it however the attempt ends. `timeout`
        bounds connecting and each wait for bytes (a reply that has arrived is never thrown away because the
        event loop was busy)."""
        t0 = time.monotonic()
        try:
            tmo = aiohttp.ClientTimeout(total=None, sock_connect=min(10.0, timeout), sock_read=timeout)
            async with self._sessions[ep.base_url].post(ep.base_url + "/chat/completions", data=body,
                                                        timeout=tmo) as resp:
                content = await resp.read()
                status, retry_after = resp.status, resp.headers.get("retry-after")
            out = classify(status, content, retry_after)
            ep.failures, ep.refused_since = 0, None
            if status in AUTH_STATUS:
                self._disable(ep, f"answered HTTP {status} ({AUTH_STATUS[status]}; key from {ep.key_source})")
            elif out.reason is None:
                ep.served += 1
                out.latency = time.monotonic() - t0
                self.latency.add(out.latency)
            return out
        except asyncio.TimeoutError:
            return Outcome("timeout")
        except aiohttp.ClientConnectorError as exc:
            now = time.monotonic()
            ep.failures += 1  # a dead endpoint fails fast; keep traffic off it for a while
            ep.down_until = now + min(30.0, 0.5 * 2 ** min(ep.failures, 6))
            ep.refused_since = ep.refused_since or now
            limit = self.down_after_s if not ep.served else 12 * self.down_after_s
            if now - ep.refused_since >= limit and ep.failures >= 3:
                self._disable(ep, f"refuses connections ({type(exc).__name__} for {now - ep.refused_since:.0f} s): "
                                  "is the server running at that address?")
            return Outcome("connect_error")
        except (aiohttp.ClientError, OSError):  # the connection broke mid-reply: retry, the endpoint is fine
            return Outcome("connection_lost")
        finally:
            self._release(ep)

    async def _attempt(self, ep: Endpoint, body: bytes) -> Outcome:
        """One attempt, bounded by the latency-derived timeout, hedged when it straggles: past a high quantile
        of the observed latencies a copy goes out on the next free slot, ahead of requests waiting for their
        first try (a hung request would otherwise hold its slot until the timeout, and its pair and lot with
        it); the first answer wins and the other is cancelled, which frees its slot."""
        timeout = self._attempt_timeout()
        tasks = {asyncio.ensure_future(self._post(ep, body, timeout))}
        hedge_after = self._hedge_after()
        try:
            if hedge_after is not None and hedge_after < timeout:
                done, _ = await asyncio.wait(tasks, timeout=hedge_after)
                if not done:
                    hedge = asyncio.ensure_future(self._hedge(body, timeout))
                    hedge.acd_hedge = True  # type: ignore[attr-defined]
                    tasks.add(hedge)
            failure: Outcome | None = None
            while tasks:  # each post ends by its own timeout
                done, tasks = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    out = t.result()
                    if out.reason is None:
                        if getattr(t, "acd_hedge", False):
                            self.stats["hedge_won"] += 1
                        return out
                    if out.reason == "timeout":
                        self.stats["timeouts"] += 1
                    failure = failure or out
            return failure or Outcome("timeout")
        finally:
            for t in tasks:
                t.cancel()

    def request_body(self, req: GenRequest, model: str, params: dict) -> bytes:
        """The JSON body of a request: what the online path posts and a batch line carries, byte for byte."""
        from acd.prompts import wire_messages

        return orjson.dumps({"model": model, "messages": wire_messages(req.messages), **params})

    async def _hedge(self, body: bytes, timeout: float) -> Outcome:
        ep = await self._acquire(HEDGE_PRIORITY)
        self.stats["hedged"] += 1
        return await self._post(ep, body, timeout)

    async def _one(self, req: GenRequest) -> GenResult:
        model = self.model_for(req)
        params = self.wire_params(req)
        body = self.request_body(req, model, params)
        if self.batch is not None:
            return await self._one_batch(req, model, params, body)
        est_tokens = _estimate_tokens(req.messages) + int(params.get("max_tokens") or params.get("max_completion_tokens") or 256)
        # Reserved when it gets a slot, just before it is first sent (prompt estimate + max_tokens at the model's
        # prices), settled with the usage the server reports: the budget holds for spent + on the wire, never
        # after the fact, and requests waiting for a slot hold no part of it.
        cost = {"usd": self.spend.estimate(model, req.messages, req.media, params), "reserved": False, "sent": False}
        usage: dict = {}
        try:
            res = await self._send(req, model, params, body, est_tokens, usage, cost)
        except asyncio.CancelledError:
            # Cut off (the build stopping). Sent and unanswered: the server may have billed it and no usage
            # will say so; it counts at its reservation, an upper bound, so the ledger never runs short. Never
            # sent: it cost nothing.
            if cost["reserved"]:
                unknown = None if usage or not cost["sent"] else cost["usd"]
                self.spend.settle(cost["usd"], model, usage, unknown_usd=unknown)
            raise
        except BaseException:
            if cost["reserved"]:
                self.spend.settle(cost["usd"], model, usage)
            raise
        if cost["reserved"]:
            self.spend.settle(cost["usd"], model, usage)
        return res

    async def _send(self, req: GenRequest, model: str, params: dict, body: bytes, est_tokens: int,
                    usage: dict, cost: dict) -> GenResult:
        errors_ = rate_limited = refused = 0
        t0 = time.monotonic()
        while True:
            if self._fatal:
                raise self._fatal
            if self._rpm:
                await self._rpm.acquire(1)
            if self._tpm:
                await self._tpm.acquire(est_tokens)
            ep = await self._acquire(req.priority)
            if not cost["reserved"]:
                try:
                    self.spend.reserve(cost["usd"])  # raises BudgetExhausted: this request is never sent
                except BaseException:
                    self._release(ep)
                    raise
                cost["reserved"] = True
            cost["sent"] = True
            out = await self._attempt(ep, body)
            if self._tpm and out.usage.get("total_tokens"):
                self._tpm.adjust(out.usage["total_tokens"] - est_tokens)
            if out.usage.get("prompt_tokens") is not None:  # billed, whatever became of the reply
                usage["prompt_tokens"] = usage.get("prompt_tokens", 0) + int(out.usage.get("prompt_tokens") or 0)
                usage["completion_tokens"] = usage.get("completion_tokens", 0) + int(out.usage.get("completion_tokens") or 0)
            reason = out.reason
            if reason is None:
                return GenResult(req.request_id, "ok", text=out.text, backend=self.name, model=model,
                                 model_revision=self.revision(model),
                                 usage={**out.usage, "attempts": errors_ + rate_limited + 1,
                                        "latency_s": round(time.monotonic() - t0, 4)})
            if reason in ("http_401", "http_403") or reason.startswith(("http_401:", "http_403:")):
                continue  # that endpoint is out now; the same request goes to another (or raises: none left)
            if reason == "connect_error":
                # The request never reached a server: the endpoint's health rule (down_after_s) decides, not
                # the request's retry budget, so a refused endpoint ends the build with one line instead of
                # dead-lettering every pair as it fails.
                refused += 1
                await asyncio.sleep(self._backoff.delay(min(refused, 6)))
                continue
            if reason == "http_429":
                rate_limited += 1
                if rate_limited > self.max_rate_limit_retries:
                    return self._failed(req, model, reason, errors_ + rate_limited)
                # Honour the server's Retry-After, spread over half as long again so the requests it refused
                # together do not return together; the slot is free meanwhile for requests that can go.
                if out.retry_after is not None:
                    delay = out.retry_after * (1.0 + 0.5 * self._backoff.rng.random())
                else:
                    delay = self._backoff.delay(rate_limited)
                await asyncio.sleep(min(delay, self.backoff_cap * 4))
                continue
            if reason.startswith("http_4") and not reason.startswith(("http_408", "http_409", "http_425")):
                return self._failed(req, model, reason, errors_ + rate_limited + 1)  # our request is wrong: no retry
            errors_ += 1
            if errors_ > self.max_retries:
                return self._failed(req, model, reason, errors_ + rate_limited)
            if reason not in RETRY_AT_ONCE:  # 5xx: the server is struggling; give it room
                await asyncio.sleep(self._backoff.delay(errors_))

    async def _one_batch(self, req: GenRequest, model: str, params: dict, body: bytes) -> GenResult:
        """One request as a Batch API line: reserved at the batch price when it is written to a file (the budget
        holds for what is queued, not only for what is answered), settled with the usage its answer reports."""
        from acd import cost
        from acd.backends.cache import request_key

        scale = 1.0 - cost.batch_discount()
        counted = cost.prompt_tokens(req.messages, req.media, cost.price_for(model, self.spend.prices))
        usd = scale * self.spend.estimate(model, req.messages, req.media, params, counted)
        self.spend.reserve(usd)  # raises BudgetExhausted: this line is never written
        custom_id = request_key(model, self.revision(model), req.messages, params)  # the cache's key
        try:
            res = await self.batch.request(custom_id, model, body, counted.tokens)
        except BaseException:
            self.spend.settle(usd, model, {}, unknown_usd=usd)  # it may have run: count its reservation
            raise
        self.spend.settle(usd, model, res.usage, scale=scale)
        if res.reason is None:
            return GenResult(req.request_id, "ok", text=res.text, backend=self.name, model=model,
                             model_revision=self.revision(model), usage={**res.usage, "attempts": res.attempts})
        return self._failed(req, model, res.reason, res.attempts)

    def _failed(self, req: GenRequest, model: str, reason: str, attempts: int) -> GenResult:
        return GenResult(req.request_id, "failed", error=self.redact(reason), backend=self.name, model=model,
                         model_revision=self.revision(model), usage={"attempts": attempts})

    async def aclose(self) -> None:
        if self.batch is not None:
            await self.batch.aclose()
        if self._started:
            await asyncio.gather(*(s.close() for s in self._sessions.values()), return_exceptions=True)
            self._started = False

    def close(self) -> None:
        if self._started and not aio.on_loop_thread():
            aio.run(self.aclose())


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
def make_openai_backend(config: recipe_model.OpenAIBackend | Mapping[str, Any], slot_share: float = 1.0) -> OpenAIBackend:
    return OpenAIBackend(config, slot_share)
