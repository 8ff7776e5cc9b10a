"""A local OpenAI-compatible server for tests and benchmarks: real HTTP, simulated model.

Speaks POST /v1/chat/completions, GET /v1/models and the Batch API (files, batches) like a real server, with:
  * latency drawn from a seeded lognormal (median, sigma), spent while holding one of `slots` concurrency
    slots (requests beyond that queue, as in vLLM's max-num-seqs); a client that disconnects first (its
    timeout, a hedge that lost) has its request aborted and the slot freed, as vLLM's server does;
  * failure injection by rate and kind: "429" (with Retry-After), "500", "timeout" (hangs far beyond any
    client timeout), "malformed" (truncated JSON body), "empty" (choices: []), "length" (cut-off reply,
    finish_reason "length"); `first_n` makes the first n attempts of every distinct request fail;
  * a deterministic reply derived from the request (`reply_for(body)`), so tests can verify content; a
    judge-style prompt (mentions "chosen_complies") gets a JSON verdict;
  * leakage: `leak={"sentences": [...], "rate": r}` appends one of the sentences (an evaluation set's text)
    to a share r of the replies (verdicts excepted), chosen by the request's hash: the same request leaks
    the same sentence every time, a new attempt (new wording, new request) draws again. GET /stats counts
    them (`leaked`); decontamination tests build against it;
  * counters: GET /stats -> outcome counts, per-request-hash outcome counts and arrival times, so tests can
    prove "zero requests were sent" and "each item was generated exactly once".
  * utilisation: GET /stats -> busy_s (first request admitted to last one finished) and slot_s (the integral
    of requests in service over time), so slot_s / (slots * busy_s) is how full the server was kept;
  * auth like a real server when `api_key` is set: a wrong or missing Bearer key gets a 401 whose message
    echoes the key it was sent (as OpenAI's does, partly), to prove clients never copy bodies into logs.
  * OpenAI's Batch API (acd.testing.batch_api, the wire format of the official SDK's `files` and `batches`):
    POST/GET/DELETE /v1/files[/{id}[/content]], POST/GET /v1/batches[/{id}[/cancel]]. Each line is answered
    by the same code as POST /v1/chat/completions (`answer`: same reply, usage rule, "500"/"empty"/"length"
    faults), so a batch answer equals the online one for the same body. Lifecycle, expiry and cancel with
    partial results, validation errors and the per-model enqueued-token limit as OpenAI does them; knobs
    (speed, limits, `expire_first`) via `batch={...}`, POST /admin/batch or --batch-* flags; GET /stats
    -> "batch" counts files, batches by final status and answers per custom_id.
Admin: POST /admin/faults {rate, kinds, retry_after, first_n}, POST /admin/leak {sentences, rate},
POST /admin/batch {BatchKnobs fields}, POST /admin/reset (counters; stored files and batches stay).

Run it:  python -m acd.testing.openai_server --port 8011 --median 0.4 --sigma 0.6 --slots 128
In tests: `with OpenAITestServer(...) as srv: srv.base_url` (a thread on a free 127.0.0.1 port), or
process=True for a separate process (benchmarks: the client must not share the server's GIL).
"""
from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from typing import Any

import orjson

from acd.testing.answers import FAULT_KINDS, USAGE_RULES, answer, auth_error, request_hash


class _State:
    def __init__(self, median: float, sigma: float, slots: int, seed: int, models: dict[str, str],
                 api_key: str | None = None, usage_rule: str = "text"):
        if usage_rule not in USAGE_RULES:
            raise ValueError(f"usage_rule: one of {USAGE_RULES}")
        self.usage_rule = usage_rule
        self.median, self.sigma, self.slots = median, sigma, slots
        self.api_key = api_key
        self.models = models  # id -> revision
        self.rng = random.Random(seed)
        self.faults: dict[str, Any] = {"rate": 0.0, "kinds": list(FAULT_KINDS), "retry_after": 1.0,
                                       "first_n": 0, "hang_s": 600.0}
        self.leak: dict[str, Any] = {"sentences": [], "rate": 0.0}
        self.sem: asyncio.Semaphore | None = None  # created on the server's loop
        from acd.testing.batch_api import BatchState

        self.batch = BatchState(seed=seed)  # the Batch API's files, batches and counters
        self.reset()

    def reset(self) -> None:
        self.outcomes: Counter = Counter()
        self.leaked = 0  # replies that carried a leaked sentence
        self.per_hash: dict[str, Counter] = defaultdict(Counter)
        self.arrivals: dict[str, list[float]] = defaultdict(list)
        self.in_flight = 0
        self.max_in_flight = 0
        self.first_arrival: list[float] = []  # per distinct request, for throughput timelines
        self.ok_times: list[float] = []  # completion time of every successful response
        self.busy_start: float | None = None
        self.busy_end: float | None = None
        self.slot_s = 0.0
        self._last_change = 0.0
        self.in_flight_changes: list[tuple[float, int]] = []  # (monotonic time, requests in service after it)
        self.billed: Counter = Counter()  # usage summed over every answer sent (what a provider would bill)
        self.billed_by_model: dict[str, Counter] = defaultdict(Counter)
        self.batch.reset_counters()  # counters only: stored files and running batches stay

    def _account(self, delta: int) -> None:
        """Requests in service changes by delta: integrate in_flight over time (slot-seconds)."""
        now = time.monotonic()
        if self.busy_start is None:
            self.busy_start = self._last_change = now
        self.slot_s += self.in_flight * (now - self._last_change)
        self._last_change = now
        self.in_flight += delta
        self.busy_end = now
        self.in_flight_changes.append((now, self.in_flight))

    def pick_fault(self, attempts: int, allowed: tuple[str, ...] = FAULT_KINDS) -> str | None:
        """A fault for a request on its `attempts`-th arrival, drawn from the configured kinds that are in
        `allowed` (a batch line cannot be rate limited or hang: batch_api passes its own set)."""
        f = self.faults
        kinds = [str(k) for k in f.get("kinds") or FAULT_KINDS if str(k) in allowed]
        if not kinds:
            return None
        if f.get("first_n") and attempts <= int(f["first_n"]):
            return kinds[self.rng.randrange(len(kinds))]
        if f.get("rate") and self.rng.random() < float(f["rate"]):
            return kinds[self.rng.randrange(len(kinds))]
        return None


async def _served_before_disconnect(request, seconds: float) -> bool:
    """Work for `seconds` unless the client disconnects first. A real server (vLLM's API server listens for
    http.disconnect the same way) aborts a request whose client left, and frees its slot: a client that
    times out or hedges a straggler must not find the slot still taken, and the slot time must not count."""
    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    work = asyncio.ensure_future(asyncio.sleep(seconds))
    gone = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
        return work.done()
    finally:
        for t in (work, gone):
            t.cancel()


def make_app(state: _State):
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    def js(obj: Any, status: int = 200, headers: dict | None = None) -> Response:
        return Response(orjson.dumps(obj), status_code=status, media_type="application/json", headers=headers)

    async def models(_: Request) -> Response:
        return js({"object": "list", "data": [
            {"id": m, "object": "model", "owned_by": "acd-test", "root": m, "revision": rev}
            for m, rev in state.models.items()]})

    async def chat(request: Request) -> Response:
        if state.sem is None:
            state.sem = asyncio.Semaphore(state.slots)
        if (denied := auth_error(state, request)) is not None:
            state.outcomes["401"] += 1
            return js(denied, 401)
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return js({"error": {"message": "invalid JSON body", "type": "invalid_request_error"}}, 400)
        h = request_hash(body)
        now = time.time()
        if h not in state.arrivals:
            state.first_arrival.append(now)
        state.arrivals[h].append(now)
        fault = state.pick_fault(len(state.arrivals[h]))

        def done(outcome: str) -> None:
            state.outcomes[outcome] += 1
            state.per_hash[h][outcome] += 1

        if fault == "429":  # a rate limiter answers at once, before any work
            done("429")
            ra = state.faults.get("retry_after", 1.0)
            return js({"error": {"message": "rate limited", "type": "rate_limit_error"}}, 429,
                      {"Retry-After": f"{ra:g}"})
        if fault == "timeout":  # hang without holding a slot, far past the client's timeout
            done("timeout")
            await asyncio.sleep(float(state.faults.get("hang_s", 600.0)))
            return js({"error": {"message": "gateway timeout"}}, 504)
        async with state.sem:
            state._account(+1)
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
            try:
                delay = state.rng.lognormvariate(math.log(state.median), state.sigma) if state.median > 0 else 0.0
                if not await _served_before_disconnect(request, delay):
                    done("aborted")  # the client went away (a timeout, a hedge that lost): vLLM aborts it too
                    return Response(status_code=499)
            finally:
                state._account(-1)
        if fault == "malformed":
            done("malformed")
            return Response(b'{"id": "chatcmpl-x", "choices": [{"index": 0, "message": {"content": "Capt',
                            status_code=200, media_type="application/json")
        outcome, status, payload = answer(state, body, fault)
        done(outcome)
        if outcome == "ok":
            state.ok_times.append(time.time())
        if outcome in ("ok", "length"):  # what a provider bills: an answer with text
            usage = payload["usage"]
            state.billed["prompt_tokens"] += usage["prompt_tokens"]
            state.billed["completion_tokens"] += usage["completion_tokens"]
            state.billed_by_model[body.get("model") or ""].update(prompt_tokens=usage["prompt_tokens"],
                                                                  completion_tokens=usage["completion_tokens"],
                                                                  requests=1)
        return js(payload, status)

    async def stats(request: Request) -> Response:
        out: dict[str, Any] = {"outcomes": dict(state.outcomes), "requests": sum(state.outcomes.values()),
                               "max_in_flight": state.max_in_flight, "distinct": len(state.arrivals),
                               "per_hash": {h: dict(c) for h, c in state.per_hash.items()},
                               "slots": state.slots, "slot_s": round(state.slot_s, 4), "leaked": state.leaked,
                               "busy_s": round((state.busy_end or 0) - (state.busy_start or 0), 4),
                               "usage": dict(state.billed),
                               "usage_by_model": {m: dict(c) for m, c in state.billed_by_model.items()},
                               "batch": state.batch.stats()}
        if request.query_params.get("arrivals"):
            out["arrivals"] = {h: v for h, v in state.arrivals.items()}
            out["timeline"] = {"first_arrival": state.first_arrival, "ok_times": state.ok_times,
                               "in_flight_changes": state.in_flight_changes}
        return js(out)

    async def set_faults(request: Request) -> Response:
        state.faults.update(orjson.loads(await request.body()))
        return js(state.faults)

    async def set_leak(request: Request) -> Response:
        state.leak.update(orjson.loads(await request.body()))
        return js(state.leak)

    async def reset(_: Request) -> Response:
        state.reset()
        return js({"ok": True})

    from acd.testing import batch_api

    return Starlette(routes=[
        *batch_api.routes(state),
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/stats", stats, methods=["GET"]),
        Route("/admin/faults", set_faults, methods=["POST"]),
        Route("/admin/leak", set_leak, methods=["POST"]),
        Route("/admin/reset", reset, methods=["POST"]),
    ])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OpenAITestServer:
    """Start the server on 127.0.0.1 (a thread in this process, or process=True), stop it on exit."""

    def __init__(self, median: float = 0.005, sigma: float = 0.0, slots: int = 256, seed: int = 0,
                 models: dict[str, str] | None = None, faults: dict | None = None, process: bool = False,
                 port: int | None = None, api_key: str | None = None, leak: dict | None = None,
                 usage_rule: str = "text", batch: dict | None = None):
        """usage_rule: "text" (prompt tokens = last user text / 4, completion = words) or "gpt-4o" (OpenAI's
        published counting, images and audio included: _gpt4o_usage). batch: Batch API knobs
        (acd.testing.batch_api.BatchKnobs: lines_per_s, validating_s, finalizing_s, completion_window_s,
        expire_first, enqueued_token_limit, max_lines, max_bytes)."""
        self.median, self.sigma, self.slots, self.seed = median, sigma, slots, seed
        self.usage_rule = usage_rule
        self.models = models or {"test-model": "rev-1", "weak-model": "rev-w"}
        self.initial_faults = faults or {}
        self.initial_leak = leak or {}
        self.initial_batch = batch or {}
        self.process = process
        self.api_key = api_key
        self.port = port or _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._root = f"http://127.0.0.1:{self.port}"
        self._thread = self._server = self._proc = None

    def __enter__(self) -> "OpenAITestServer":
        if self.process:
            args = [sys.executable, "-m", "acd.testing.openai_server", "--port", str(self.port),
                    "--median", str(self.median), "--sigma", str(self.sigma), "--slots", str(self.slots),
                    "--seed", str(self.seed), "--models", ",".join(f"{m}={r}" for m, r in self.models.items()),
                    "--usage-rule", self.usage_rule]
            for name, value in self.initial_batch.items():
                args += ["--batch-" + name.replace("_", "-"), orjson.dumps(value).decode()]
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            if self.api_key is not None:
                env["ACD_TEST_SERVER_KEY"] = self.api_key  # not on the command line (ps shows that)
            self._proc = subprocess.Popen(args, env=env)
        else:
            import uvicorn

            state = _State(self.median, self.sigma, self.slots, self.seed, self.models, self.api_key, self.usage_rule)
            state.batch.set_knobs(**self.initial_batch)
            config = uvicorn.Config(make_app(state), host="127.0.0.1", port=self.port, log_level="warning",
                                    access_log=False, lifespan="off", timeout_keep_alive=30)
            self._server = uvicorn.Server(config)
            self._thread = threading.Thread(target=self._server.run, name="openai-test-server", daemon=True)
            self._thread.start()
        self._wait_ready()
        if self.initial_faults:
            self.set_faults(**self.initial_faults)
        if self.initial_leak:
            self.set_leak(**self.initial_leak)
        return self

    def _wait_ready(self, timeout: float = 20.0) -> None:
        import httpx

        deadline = time.time() + timeout
        while time.time() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"test server exited with {self._proc.returncode}")
            try:
                if httpx.get(self._root + "/v1/models", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"test server did not start on port {self.port}")

    def __exit__(self, *exc) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True  # don't wait for hanging "timeout" requests
            self._thread.join(10)

    # --- control and counters (over HTTP, so the same calls work for a thread or a process) ---------
    def stats(self, arrivals: bool = False) -> dict:
        import httpx

        return httpx.get(self._root + "/stats" + ("?arrivals=1" if arrivals else ""), timeout=10).json()

    def set_faults(self, **faults) -> dict:
        import httpx

        return httpx.post(self._root + "/admin/faults", content=orjson.dumps(faults), timeout=10).json()

    def set_leak(self, sentences: list[str], rate: float) -> dict:
        """Append one of `sentences` to a share `rate` of the replies (see `leaked`)."""
        import httpx

        body = orjson.dumps({"sentences": list(sentences), "rate": float(rate)})
        return httpx.post(self._root + "/admin/leak", content=body, timeout=10).json()

    def set_batch(self, **knobs) -> dict:
        """Change Batch API knobs (BatchKnobs fields); setting expire_first re-arms it for the next batch."""
        import httpx

        r = httpx.post(self._root + "/admin/batch", content=orjson.dumps(knobs), timeout=10)
        if r.status_code != 200:
            raise ValueError(r.json()["error"]["message"])
        return r.json()

    def heal(self) -> None:
        self.set_faults(rate=0.0, first_n=0)

    def reset(self) -> None:
        import httpx

        httpx.post(self._root + "/admin/reset", timeout=10)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=8011)
    ap.add_argument("--median", type=float, default=0.4, help="median latency, seconds")
    ap.add_argument("--sigma", type=float, default=0.6, help="lognormal sigma of latency")
    ap.add_argument("--slots", type=int, default=128, help="concurrent requests served; more queue")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fault-rate", type=float, default=0.0)
    ap.add_argument("--fault-kinds", default=",".join(FAULT_KINDS))
    ap.add_argument("--models", default="test-model=rev-1,weak-model=rev-w", help="id=revision,...")
    ap.add_argument("--leak-file", default=None, help="sentences to leak into replies, one a line")
    ap.add_argument("--leak-rate", type=float, default=0.0, help="share of replies that carry one")
    ap.add_argument("--usage-rule", default="text", choices=USAGE_RULES)
    from acd.testing.batch_api import BatchKnobs

    for name, fld in BatchKnobs.model_fields.items():  # --batch-lines-per-s 50, --batch-expire-first 0.3, ...
        ap.add_argument("--batch-" + name.replace("_", "-"), dest="batch_" + name, type=orjson.loads,
                        default=None, help=f"Batch API: {fld.description} (default {fld.default})")
    a = ap.parse_args(argv)
    models = dict(kv.split("=", 1) if "=" in kv else (kv, "") for kv in a.models.split(",") if kv)
    state = _State(a.median, a.sigma, a.slots, a.seed, models, os.environ.get("ACD_TEST_SERVER_KEY"), a.usage_rule)
    state.faults.update(rate=a.fault_rate, kinds=a.fault_kinds.split(","))
    state.batch.set_knobs(**{n: getattr(a, "batch_" + n) for n in BatchKnobs.model_fields
                             if getattr(a, "batch_" + n) is not None})
    if a.leak_file:
        with open(a.leak_file, encoding="utf-8") as f:
            state.leak.update(sentences=[ln.strip() for ln in f if ln.strip()], rate=a.leak_rate)
    # Loopback only: this is a test double, never a service.
    uvicorn.run(make_app(state), host="127.0.0.1", port=a.port, log_level="warning", access_log=False,
                lifespan="off", timeout_keep_alive=30)


if __name__ == "__main__":
    main()
