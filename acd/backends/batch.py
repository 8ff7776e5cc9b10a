"""backend.mode: batch — the OpenAI Batch API as the openai backend's transport (the official SDK).

The generate stage does not change: a pair's requests are awaited one after another as in the online mode.
Here each awaited request becomes a line of a JSONL input file instead of an HTTP request:

  * Packing. Lines are written to disk as they come (a wave of 100k requests with inline images never sits in
    memory), one open file per model (a batch holds one model), closed when the next line would pass
    `batch.max_lines`, `batch.max_bytes` or the model's `batch.enqueued_tokens`, or when no request has come for
    `batch.collect_s`: every lot in flight asks for its instructions at once, so they go in one wave, and the
    captions that need those instructions in the next. The line's custom_id is the request's cache key
    (acd.backends.cache.request_key) and its body is byte for byte the online request's body: the same server
    answers give the same pairs.
  * Submission. Upload (purpose="batch"), then batches.create(completion_window="24h"). With
    `batch.enqueued_tokens` set, a file waits until the model's enqueued prompt tokens leave room for it; a batch
    the server fails with token_limit_exceeded is created again from the same file once a running batch ends.
  * Tracking. Every file and batch is recorded before the build goes on (acd.backends.batch_tracker): a killed
    build's rerun re-uploads nothing that was submitted and polls the batches it knows.
  * Results. Output and error files are matched by custom_id (their order is not the input's). A line that
    failed in a way a retry can fix (batch_expired, batch_cancelled, 5xx, a cut-off or malformed reply, a line
    the files do not mention) is written to the next file, and only those lines, up to `max_retries` failures
    over every run of the run directory; a 4xx that says the request is wrong fails it at once.
  * Cancel. cancel_registered() (Ctrl-C in `acd build`, `make down`, `acd batches --cancel`) cancels the batches
    still running and says what was in flight; a rerun takes their partial results and resubmits the rest.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import orjson

from acd import errors
from acd.backends.batch_tracker import LIVE, TRACKER_FILE, Tracker, register_live, unregister_live
from acd.backends.replies import classify

log = logging.getLogger("acd.backends.batch")

URL = "/v1/chat/completions"
# Reasons a resubmission can fix; anything else (a 4xx: the request itself is wrong) fails the line at once.
RETRYABLE = ("batch_expired", "batch_cancelled", "missing_line", "malformed_json", "empty_choices",
             "empty_content", "length_cutoff", "timeout", "http_408", "http_409", "http_425", "http_429", "http_5")


# Our prompt-token count (acd.cost) is an estimate of the provider's: files are packed to, and the queue filled
# to, this share of backend.batch.enqueued_tokens. A refusal that still happens is waited out and resubmitted.
TOKEN_MARGIN = 0.85


def retryable(reason: str) -> bool:
    return reason.startswith(RETRYABLE) or reason.startswith("batch_") and not reason.startswith("batch_failed")


@dataclass
class LineResult:
    reason: str | None  # None: success
    text: str | None = None
    usage: dict = field(default_factory=dict)  # summed over the line's attempts that reported usage
    attempts: int = 0


@dataclass
class _Line:
    custom_id: str
    model: str
    tokens: int
    future: asyncio.Future
    loc: tuple[Path, int, int] | None = None  # where its JSONL line is on disk (path, offset, length)
    failures: int = 0  # failed attempts so far, every run of the run directory counted
    usage: dict = field(default_factory=dict)


@dataclass
class _OpenFile:
    model: str
    path: Path
    fh: Any
    custom_ids: list[str] = field(default_factory=list)
    size: int = 0
    tokens: int = 0


def _read(loc: tuple[Path, int, int]) -> bytes:
    """A line written earlier (to an input file or the held file), read back for its resubmission."""
    path, off, n = loc
    with open(path, "rb") as fh:
        fh.seek(off)
        return fh.read(n)


def line_bytes(custom_id: str, body: bytes) -> bytes:
    """One input line in OpenAI's batch format (also what `vllm run-batch` reads); `body` is the online request's
    JSON body, embedded as is."""
    return b'{"custom_id":"' + custom_id.encode() + b'","method":"POST","url":"' + URL.encode() + b'","body":' + \
        body + b"}\n"


class BatchTransport:
    def __init__(self, settings, base_url: str, api_key: str | None, api_key_env: str | None, max_retries: int):
        self.settings = settings
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.max_retries = max_retries
        self._api_key = api_key
        self._client = None
        self.tracker: Tracker | None = None
        self.dir: Path | None = None
        self._lines: dict[str, _Line] = {}  # requests waiting for an answer, by custom_id
        self._open: dict[str, _OpenFile] = {}  # model -> the file being filled
        self._held: _OpenFile | None = None  # bodies of lines waiting on a batch an earlier run submitted
        self._live: dict[str, tuple[str, str, int]] = {}  # batch_id -> (file_id, model, tokens) being polled
        self._queued_tokens: dict[str, int] = {}  # model -> prompt tokens in batches not yet over
        self._room: asyncio.Condition | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()
        self._poller: asyncio.Task | None = None
        self._seq = 0
        self._outputs: dict[str, dict[str, LineResult]] = {}  # batch_id -> its parsed results (reruns)
        self._lonely_refusals: dict[str, int] = {}  # file_id -> token-limit refusals with none of ours running

    # --- set-up -------------------------------------------------------------------------------------------
    def attach(self, run_dir: str | Path) -> None:
        """Keep the tracker and the input files in <run_dir>/batches (before the first request)."""
        self.dir = Path(run_dir) / "batches"
        self.tracker = Tracker(Path(run_dir) / TRACKER_FILE)
        self.tracker.set_meta(base_url=self.base_url, api_key_env=self.api_key_env or "")

    def _ensure(self) -> None:
        if self.tracker is None:  # used outside a build (a tool, a test): a private directory
            import tempfile

            self.attach(tempfile.mkdtemp(prefix="acd-batch-"))
        if self._client is None:
            from openai import AsyncOpenAI

            self._client = AsyncOpenAI(base_url=self.base_url, api_key=self._api_key or "none", max_retries=5,
                                       timeout=600.0)
            self._room = asyncio.Condition()

    @property
    def _token_limit(self) -> float | None:
        """Prompt tokens a model's files and queue are filled to: the provider's limit less our margin."""
        return self.settings.enqueued_tokens * TOKEN_MARGIN if self.settings.enqueued_tokens else None

    # --- the request path -----------------------------------------------------------------------------------
    async def request(self, custom_id: str, model: str, body: bytes, tokens: int) -> LineResult:
        """One request as a batch line; returns when its answer (or its final failure) is known."""
        self._ensure()
        if custom_id in self._lines:  # the same request twice in flight: one line
            return await asyncio.shield(self._lines[custom_id].future)
        line = _Line(custom_id, model, tokens, asyncio.get_running_loop().create_future())
        self._lines[custom_id] = line
        try:
            self._route(line, body)
            return await line.future
        finally:
            self._lines.pop(custom_id, None)

    def _route(self, line: _Line, body: bytes) -> None:
        """A new request: wait on the file an earlier run submitted it in, take an answer an earlier run
        received, give up after max_retries failures, or write it to the next file."""
        history = self.tracker.history(line.custom_id)
        failed = [o for _, o in history if o not in (None, "ok")]
        line.failures = len(failed)
        pending = [f for f, o in history if o is None]
        if pending:
            self._hold(line, body)
            self._watch_file(pending[-1])
            return
        if history and history[-1][1] == "ok":
            self._hold(line, body)
            self._spawn(self._answer_from_earlier_run(line, history[-1][0]))
            return
        if failed and line.failures > self.max_retries:
            self._finish(line, LineResult(failed[-1], attempts=line.failures))
            return
        self._enqueue(line, line_bytes(line.custom_id, body))

    def _enqueue(self, line: _Line, data: bytes) -> None:
        s = self.settings
        f = self._open.get(line.model)
        limit = self._token_limit
        if f is not None and (len(f.custom_ids) + 1 > s.max_lines or f.size + len(data) > s.max_bytes
                              or (limit is not None and f.tokens + line.tokens > limit)):
            self._seal(line.model)
            f = None
        if f is None:
            f = self._open[line.model] = self._new_file(line.model, "input")
        line.loc = (f.path, f.size, len(data))
        f.fh.write(data)
        f.custom_ids.append(line.custom_id)
        f.size += len(data)
        f.tokens += line.tokens
        self._quiet_timer()

    def _hold(self, line: _Line, body: bytes) -> None:
        """Keep the body on disk (not in memory) while the line waits on an earlier run's batch: a retry needs it."""
        if self._held is None:
            self._held = self._new_file("", "held")
        data = line_bytes(line.custom_id, body)
        line.loc = (self._held.path, self._held.size, len(data))
        self._held.fh.write(data)
        self._held.fh.flush()
        self._held.size += len(data)

    def _new_file(self, model: str, kind: str) -> _OpenFile:
        self._seq += 1
        d = self.dir / kind
        d.mkdir(parents=True, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model) or "any"
        path = d / f"{os.getpid()}-{int(time.time() * 1000)}-{self._seq:05d}-{safe}.jsonl"
        return _OpenFile(model, path, open(path, "wb"))

    def _quiet_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(self.settings.collect_s, self._seal_all)

    def _seal_all(self) -> None:
        self._timer = None
        for model in list(self._open):
            self._seal(model)

    def _seal(self, model: str) -> None:
        f = self._open.pop(model, None)
        if f is None:
            return
        f.fh.close()
        self._spawn(self._submit(f))

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("batch transport: %s", _describe(exc))
            self._fail_all(exc)

    def _fail_all(self, exc: BaseException) -> None:
        """The server cannot be used (a wrong key, an endpoint that is not there): every waiting line ends."""
        err = exc if isinstance(exc, errors.BackendUnavailable) else errors.BackendUnavailable(
            f"batch API at {self.base_url}: {_describe(exc)}. Fix that and rerun: submitted batches are tracked "
            f"in the run directory and picked up again")
        for line in list(self._lines.values()):
            if not line.future.done():
                line.future.set_exception(err)

    # --- server side ------------------------------------------------------------------------------------------
    async def _submit(self, f: _OpenFile) -> None:
        with open(f.path, "rb") as fh:
            uploaded = await self._client.files.create(file=(f.path.name, fh), purpose="batch")
        self.tracker.record_file(uploaded.id, f.model, f.custom_ids, f.tokens, f.size, str(f.path))
        log.info("batch input %s: %d requests, %.1f MB, %s", uploaded.id, len(f.custom_ids), f.size / 1e6, f.model)
        await self._create_batch(uploaded.id, f.model, f.tokens, len(f.custom_ids))

    async def _create_batch(self, file_id: str, model: str, tokens: int, n: int) -> None:
        limit = self._token_limit
        async with self._room:
            while limit is not None and self._queued_tokens.get(model, 0) and \
                    self._queued_tokens.get(model, 0) + tokens > limit:
                await self._room.wait()
            self._queued_tokens[model] = self._queued_tokens.get(model, 0) + tokens
        batch = await self._client.batches.create(input_file_id=file_id, endpoint=URL,
                                                  completion_window=self.settings.completion_window,
                                                  metadata={"acd": "acd-builder"})
        self.tracker.record_batch(batch.id, file_id, batch.status)
        register_live(self.tracker.path)
        log.info("batch %s: %d requests submitted (%s)", batch.id, n, batch.status)
        self._live[batch.id] = (file_id, model, tokens)
        self._poll()

    def _watch_file(self, file_id: str) -> None:
        """Wait on a file an earlier run uploaded: poll its batch, or create the batch it never got."""
        if any(v[0] == file_id for v in self._live.values()):
            return
        row = self.tracker.file(file_id)
        batches = self.tracker.batches_of(file_id)
        untaken = [b for b in batches if not b[2]]
        if untaken:
            batch_id = untaken[-1][0]
            self._live[batch_id] = (file_id, row[1], row[3])
            self._queued_tokens[row[1]] = self._queued_tokens.get(row[1], 0) + row[3]
            self._poll()
        elif not batches:
            # Uploaded, and the build died before it recorded a batch: the server may have created one (the
            # kill fell between its answer and our record). Adopt that batch, else submit the file.
            self._live[f"pending:{file_id}"] = (file_id, row[1], row[3])
            self._spawn(self._adopt_or_submit(file_id, row[1], row[3], row[2]))
        elif all(b[2] for b in batches):
            # Its last batch was refused for the token limit: submit the file that is already there.
            self._live[f"pending:{file_id}"] = (file_id, row[1], row[3])
            self._spawn(self._resubmit_file(file_id, row[1], row[3], row[2]))

    async def _adopt_or_submit(self, file_id: str, model: str, tokens: int, n: int) -> None:
        async for b in self._client.batches.list(limit=100):
            if b.input_file_id == file_id and not (b.status == "failed" and b.errors and any(
                    e.code == "token_limit_exceeded" for e in b.errors.data or [])):
                self._live.pop(f"pending:{file_id}", None)
                self.tracker.record_batch(b.id, file_id, b.status)
                log.info("batch %s: found on the server for %s (created before the last run stopped)", b.id, file_id)
                self._live[b.id] = (file_id, model, tokens)
                self._queued_tokens[model] = self._queued_tokens.get(model, 0) + tokens
                self._poll()
                return
            if b.created_at and b.created_at < time.time() - 7 * 86400:
                break  # newest first: older than any batch this run directory can still be waiting for
        await self._resubmit_file(file_id, model, tokens, n)

    async def _resubmit_file(self, file_id: str, model: str, tokens: int, n: int) -> None:
        self._live.pop(f"pending:{file_id}", None)
        await self._create_batch(file_id, model, tokens, n)

    def _poll(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.ensure_future(self._poll_loop())
            self._poller.add_done_callback(self._done)

    async def _poll_loop(self) -> None:
        seen: dict[str, str] = {}
        while self._live:
            for batch_id in [b for b in self._live if not b.startswith("pending:")]:
                try:
                    b = await self._client.batches.retrieve(batch_id)
                except (openai.APIConnectionError, openai.InternalServerError) as exc:
                    # The SDK already retried; a batch runs for hours, so a blip is waited out, not fatal.
                    log.warning("batch %s: status not readable (%s); asking again in %.0f s", batch_id,
                                type(exc).__name__, self.settings.poll_s)
                    continue
                counts = b.request_counts
                said = f"{b.status} {counts.completed if counts else 0}/{counts.total if counts else 0}"
                if seen.get(batch_id) != said:
                    seen[batch_id] = said
                    self.tracker.set_status(batch_id, b.status)
                    log.info("batch %s: %s", batch_id, said)
                if b.status not in LIVE:
                    await self._take(b)
            if self._live:
                await asyncio.sleep(self.settings.poll_s)

    async def _take(self, b) -> None:
        """A batch is over: read its output and error files, settle every line, resubmit what can be."""
        file_id, model, tokens = self._live.pop(b.id)
        async with self._room:
            self._queued_tokens[model] = max(0, self._queued_tokens.get(model, 0) - tokens)
            self._room.notify_all()
        codes = [e.code for e in ((b.errors.data or []) if b.errors else [])]
        if b.status == "failed" and "token_limit_exceeded" in codes:
            # Refused before any line ran: the same file goes in again once a running batch leaves room.
            self.tracker.drop_batch(b.id)
            log.info("batch %s: token_limit_exceeded; resubmitting %s when the queue has room", b.id, file_id)
            self._live[f"pending:{file_id}"] = (file_id, model, tokens)
            self._spawn(self._after_room(file_id, model, tokens, b.request_counts.total if b.request_counts else 0))
            return
        results = await self._results(b)
        if b.status == "failed":  # validation: the file itself is wrong; resubmitting it would fail again
            why = f"batch_failed: {codes[0] if codes else 'unknown'}"
            results = {c: LineResult(why) for c in self.tracker.file_lines(file_id)}
        outcomes = {}
        for cid in self.tracker.file_lines(file_id):
            res = results.get(cid) or LineResult("missing_line")
            outcomes[cid] = "ok" if res.reason is None else res.reason
            self._deliver(cid, res)
        self.tracker.take(b.id, file_id, outcomes)
        self._outputs[b.id] = results
        row = self.tracker.file(file_id)
        if row and row[5] and not self.settings.keep_files:  # its retries were copied to the next file
            Path(row[5]).unlink(missing_ok=True)
        if not self.tracker.live():
            unregister_live(self.tracker.path)

    async def _after_room(self, file_id: str, model: str, tokens: int, n: int) -> None:
        async with self._room:  # checked and waited under the lock: a batch ending in between still wakes us
            ours = self._queued_tokens.get(model, 0)  # our batches of this model not yet over (or being created)
            if ours:
                await self._room.wait()
        if not ours:
            # Refused with none of ours running: other work holds the queue, or the file alone is too big for
            # it. Wait a while; a file refused this way again and again fails its lines with a clear reason.
            self._lonely_refusals[file_id] = self._lonely_refusals.get(file_id, 0) + 1
            if self._lonely_refusals[file_id] > 3:
                self._live.pop(f"pending:{file_id}", None)
                log.error("batch input %s (%d requests, ~%d prompt tokens) is refused for the enqueued-token limit "
                          "with nothing else of ours queued: set backend.batch.enqueued_tokens to the model's limit "
                          "so files are packed to fit", file_id, n, tokens)
                outcomes = {}
                for cid in self.tracker.file_lines(file_id):
                    outcomes[cid] = "batch_failed: token_limit_exceeded"
                    self._deliver(cid, LineResult(outcomes[cid]))
                self.tracker.take(f"none:{file_id}", file_id, outcomes)
                return
            await asyncio.sleep(self.settings.poll_s * 10)
        await self._resubmit_file(file_id, model, tokens, n)

    async def _results(self, b) -> dict[str, LineResult]:
        out: dict[str, LineResult] = {}
        for fid in (b.output_file_id, b.error_file_id):
            if not fid:
                continue
            content = (await self._client.files.content(fid)).content
            for raw in content.split(b"\n"):  # not splitlines(): it also breaks at U+2028 inside a string
                if not raw.strip():
                    continue
                try:
                    rec = orjson.loads(raw)
                    cid = rec["custom_id"]
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    continue
                resp, err = rec.get("response"), rec.get("error")
                if resp:
                    o = classify(int(resp.get("status_code") or 0), orjson.dumps(resp.get("body") or {}))
                    out[cid] = LineResult(o.reason, o.text, o.usage)
                else:
                    code = (err or {}).get("code") or "unknown"
                    code = code if code.startswith("batch_") else f"batch_{code}"
                    out[cid] = LineResult(code if len(code) <= 64 else "batch_error")
        return out

    def _deliver(self, cid: str, res: LineResult) -> None:
        line = self._lines.get(cid)
        if line is None or line.future.done():
            return  # nobody in this run asked for it (an earlier run's line): its outcome is recorded
        for k in ("prompt_tokens", "completion_tokens"):
            if res.usage.get(k) is not None:
                line.usage[k] = line.usage.get(k, 0) + int(res.usage[k] or 0)
        if res.reason is None:
            self._finish(line, res)
            return
        line.failures += 1
        if retryable(res.reason) and line.failures <= self.max_retries and line.loc is not None:
            self._enqueue(line, _read(line.loc))
            return
        self._finish(line, res)

    def _finish(self, line: _Line, res: LineResult) -> None:
        if not line.future.done():
            usage = {**res.usage, **line.usage} if line.usage else res.usage
            line.future.set_result(LineResult(res.reason, res.text, usage, line.failures + 1))

    async def _answer_from_earlier_run(self, line: _Line, file_id: str) -> None:
        """An earlier run received this line's answer but the build stopped before it was cached: read it again."""
        for batch_id, _status, taken in reversed(self.tracker.batches_of(file_id)):
            if batch_id not in self._outputs:
                self._outputs[batch_id] = await self._results(await self._client.batches.retrieve(batch_id))
            res = self._outputs[batch_id].get(line.custom_id)
            if res is not None and res.reason is None:
                self._finish(line, res)
                return
        self._enqueue(line, _read(line.loc))

    # --- stopping ---------------------------------------------------------------------------------------------
    async def aclose(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for f in list(self._open.values()) + ([self._held] if self._held else []):
            f.fh.close()
            if not self.settings.keep_files:  # never uploaded (or only a copy): a rerun writes its lines again
                f.path.unlink(missing_ok=True)
        if self._client is not None:
            await self._client.close()
            self._client = None


def _describe(exc: BaseException) -> str:
    """An SDK error as the type and HTTP status only: its message may carry the server's body (which can echo the
    request or the key), and that never reaches a log line or a reason."""
    status = getattr(exc, "status_code", None)
    return type(exc).__name__ + (f" (HTTP {status})" if status else "")


@dataclass
class Cancelled:
    batch_id: str
    lines: int  # requests it held
    status: str  # what the server said (cancelling), or why it could not be cancelled
    run: str = ""

    def __str__(self) -> str:
        return f"{self.batch_id}: {self.lines} requests, {self.status}" + (f" ({self.run})" if self.run else "")


async def _cancel(client, tracker: Tracker) -> list[Cancelled]:
    out = []
    run = str(tracker.path.parent.parent)
    for batch_id, _status, n in tracker.live():
        try:
            b = await client.batches.cancel(batch_id)
            tracker.set_status(batch_id, b.status)
            out.append(Cancelled(batch_id, n, b.status, run))
        except Exception as exc:  # noqa: BLE001 - one batch that cannot be cancelled must not stop the others
            out.append(Cancelled(batch_id, n, f"not cancelled ({type(exc).__name__})", run))
    return out


def _with_client(tracker: Tracker, work):
    """Run `work(client)` with an SDK client for the server a tracker's batches live on (its key from the
    environment variable the tracker names; never stored)."""
    from openai import AsyncOpenAI

    meta = tracker.meta()
    key = os.environ.get(meta.get("api_key_env") or "", "") or "none"

    async def run():
        client = AsyncOpenAI(base_url=meta["base_url"], api_key=key, max_retries=2, timeout=30.0)
        try:
            return await work(client)
        finally:
            await client.close()

    return asyncio.run(run())


def refresh(tracker: Tracker) -> None:
    """Ask the server for the status of every batch the tracker still thinks is running (`acd batches`)."""
    async def work(client):
        for batch_id, _status, _n in tracker.live():
            try:
                tracker.set_status(batch_id, (await client.batches.retrieve(batch_id)).status)
            except openai.OpenAIError as exc:
                log.warning("batch %s: status not readable (%s)", batch_id, type(exc).__name__)

    if tracker.live():
        _with_client(tracker, work)


def cancel_registered(paths: list[Path] | None = None) -> list[Cancelled]:
    """Cancel the running batches of every tracker in the registry (or of `paths`): Ctrl-C, `make down`,
    `acd batches --cancel`. The key comes from the environment variable the tracker names."""
    from acd.backends.batch_tracker import live_registry

    said = []
    for path in paths if paths is not None else live_registry():
        tracker = Tracker(path)
        if not tracker.live():
            unregister_live(path)
            tracker.close()
            continue
        said.extend(_with_client(tracker, lambda client: _cancel(client, tracker)))
        tracker.close()
    return said
