"""OpenAI's Batch API for the test server (acd.testing.openai_server): the Files and Batches endpoints, the
stored files and batches, and a background processor that answers each line the way the online endpoint does.

Wire formats follow OpenAI's published protocol (what the official `openai` SDK sends and parses), nothing added:
  POST /v1/files (multipart: file, purpose)      GET /v1/files, /v1/files/{id}, /v1/files/{id}/content
  DELETE /v1/files/{id}
  POST /v1/batches {input_file_id, endpoint, completion_window, metadata?}
  GET /v1/batches (after, limit; newest first), GET /v1/batches/{id}, POST /v1/batches/{id}/cancel

Lifecycle: validating -> in_progress -> finalizing -> completed; a bad input file or the per-model enqueued-token
limit -> failed (errors.data); the completion window passing (or the `expire_first` knob) -> expired; cancel ->
cancelling -> cancelled. Expired and cancelled batches keep their partial results: the output file holds the
lines answered with status 200, the error file the other answered lines (a "500" fault: response.status_code 500
with an error body) plus one line per unfinished request (error.code "batch_expired" / "batch_cancelled").
Output lines come shuffled (seeded by the server's seed and the batch's ordinal), as OpenAI keeps no order either.

Knobs (BatchKnobs; OpenAITestServer(batch={...}), POST /admin/batch, --batch-* flags) set speed, limits and
forced expiry. Counters go to GET /stats under "batch".
"""
from __future__ import annotations

import asyncio
import email.parser
import email.policy
import hashlib
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

ENDPOINT = "/v1/chat/completions"  # the only batch endpoint this server answers
BATCH_FAULT_KINDS = ("500", "empty", "length")  # faults that make sense for one line (no 429, no hang)
TERMINAL = ("completed", "failed", "expired", "cancelled")
FILE_TTL_S = 30 * 86400  # OpenAI expires purpose=batch files after 30 days (only reported, never enforced)


class BatchKnobs(BaseModel):
    """How the simulated batch service behaves. Defaults are OpenAI's limits and a fast clock, so tests run in
    seconds; tests lower the limits to reach them."""
    model_config = ConfigDict(extra="forbid")

    lines_per_s: float = Field(2000.0, ge=0, description="lines answered per second per batch; 0 holds them")
    validating_s: float = Field(0.05, ge=0, description="time a batch spends validating")
    finalizing_s: float = Field(0.05, ge=0, description="time spent finalizing (and cancelling)")
    completion_window_s: float = Field(86400.0, gt=0, description="real seconds '24h' lasts here")
    expire_first: float | None = Field(None, ge=0, le=1, description=(
        "force the first batch to start processing (after this is set or reset) to expire with this share of "
        "its lines unfinished"))
    enqueued_token_limit: int | None = Field(None, ge=0, description=(
        "per model: prompt tokens of batches not yet finished; a batch that would exceed it fails with "
        "token_limit_exceeded; None: no limit"))
    max_lines: int = Field(50_000, ge=1, description="requests per input file (OpenAI: 50,000)")
    max_bytes: int = Field(200 * 1024 * 1024, ge=1, description="bytes per input file (OpenAI: 200 MB)")


def _hex(*parts: object, n: int = 32) -> str:
    return hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:n]


def _error(message: str, status: int, param: str | None = None, type_: str = "invalid_request_error",
           code: str | None = None) -> tuple[dict, int]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}, status


@dataclass
class StoredFile:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int

    def obj(self) -> dict:
        return {"id": self.id, "object": "file", "bytes": len(self.data), "created_at": self.created_at,
                "expires_at": self.created_at + FILE_TTL_S if self.purpose.startswith("batch") else None,
                "filename": self.filename, "purpose": self.purpose, "status": "processed", "status_details": None}


@dataclass
class Batch:
    id: str
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict | None
    created_at: float
    expires_at: float
    status: str = "validating"
    stamps: dict[str, int] = field(default_factory=dict)  # in_progress_at, finalizing_at, ...
    errors: list[dict] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    model: str | None = None
    lines: list[dict] = field(default_factory=list)  # validated input lines, in input order
    results: dict[str, dict] = field(default_factory=dict)  # custom_id -> output line, as answered
    completed: int = 0  # answered with status 200
    failed: int = 0  # answered with another status
    usage: Counter = field(default_factory=Counter)
    tokens_by_model: dict[str, int] = field(default_factory=dict)  # enqueued (estimated prompt) tokens
    cancel_requested: bool = False
    seq: int = 0  # creation ordinal: seeds the output order, so a rerun of a test shuffles the same way

    def obj(self) -> dict:
        stamp = self.stamps.get
        return {
            "id": self.id, "object": "batch", "endpoint": self.endpoint, "model": self.model,
            "errors": {"object": "list", "data": self.errors} if self.errors else None,
            "input_file_id": self.input_file_id, "completion_window": self.completion_window,
            "status": self.status, "output_file_id": self.output_file_id, "error_file_id": self.error_file_id,
            "created_at": int(self.created_at), "in_progress_at": stamp("in_progress_at"),
            "expires_at": int(self.expires_at), "finalizing_at": stamp("finalizing_at"),
            "completed_at": stamp("completed_at"), "failed_at": stamp("failed_at"),
            "expired_at": stamp("expired_at"), "cancelling_at": stamp("cancelling_at"),
            "cancelled_at": stamp("cancelled_at"),
            "request_counts": {"total": len(self.lines), "completed": self.completed, "failed": self.failed},
            "usage": {"input_tokens": self.usage["prompt_tokens"], "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens": self.usage["completion_tokens"],
                      "output_tokens_details": {"reasoning_tokens": 0},
                      "total_tokens": self.usage["prompt_tokens"] + self.usage["completion_tokens"]},
            "metadata": self.metadata,
        }


class BatchState:
    """Files, batches and counters of one server. Lives on the server's event loop: handlers and processors
    never await inside an update, so no lock is needed."""

    def __init__(self, knobs: BatchKnobs | None = None, seed: int = 0):
        self.knobs = knobs or BatchKnobs()
        self.seed = seed
        self.files: dict[str, StoredFile] = {}
        self.batches: dict[str, Batch] = {}  # insertion order = creation order
        self.tasks: set[asyncio.Task] = set()  # keep processors referenced until they end
        self.batches_total = 0  # never reset (batches_created is a counter /admin/reset clears)
        self._ids = 0  # never reset: ids stay unique for the server's life
        # ...and across its restarts: a client resuming with a stored batch id must get a 404 from a new server,
        # never another batch that happens to have the same id.
        self._instance = time.time_ns()
        self.reset_counters()

    def reset_counters(self) -> None:
        self.files_uploaded = 0
        self.batches_created = 0
        self.final: Counter = Counter()  # final status -> batches
        self.failed_codes: Counter = Counter()  # errors.data codes of failed batches
        self.per_custom_id: Counter = Counter()  # custom_id -> times its line was answered
        self.line_outcomes: Counter = Counter()
        self.usage: Counter = Counter()
        self.usage_by_model: dict[str, Counter] = defaultdict(Counter)
        self.attempts: Counter = Counter()  # request hash -> batch answers (the faults' first_n)
        self.expire_armed = self.knobs.expire_first is not None

    def set_knobs(self, **changes: Any) -> BatchKnobs:
        self.knobs = BatchKnobs(**{**self.knobs.model_dump(), **changes})
        if "expire_first" in changes:
            self.expire_armed = self.knobs.expire_first is not None
        return self.knobs

    def new_id(self, prefix: str) -> str:
        self._ids += 1
        return prefix + _hex(self._instance, prefix, self._ids, n=24 if prefix == "file-" else 32)

    def enqueued(self) -> Counter:
        """Per model, the estimated prompt tokens of the batches admitted and not yet finished."""
        out: Counter = Counter()
        for b in self.batches.values():
            if b.status not in TERMINAL:
                out.update(b.tokens_by_model)
        return out

    def stats(self) -> dict:
        return {"files_uploaded": self.files_uploaded, "batches_created": self.batches_created,
                "batches": dict(self.final), "failed_codes": dict(self.failed_codes),
                "lines_processed": sum(self.per_custom_id.values()), "lines_distinct": len(self.per_custom_id),
                "max_processed_per_custom_id": max(self.per_custom_id.values(), default=0),
                "per_custom_id": dict(self.per_custom_id), "outcomes": dict(self.line_outcomes),
                "usage": dict(self.usage), "usage_by_model": {m: dict(c) for m, c in self.usage_by_model.items()},
                "enqueued_tokens": dict(self.enqueued()),
                "in_flight": sum(b.status not in TERMINAL for b in self.batches.values())}


# --- validation ---------------------------------------------------------------------------------------------
def _line_error(code: str, message: str, line: int | None = None, param: str | None = None) -> dict:
    return {"code": code, "message": message, "param": param, "line": line}


def validate(data: bytes, endpoint: str, knobs: BatchKnobs) -> tuple[list[dict], list[dict]]:
    """(lines, errors) of an input file, as OpenAI checks it; errors name the 1-based line. Lines may name
    different models (OpenAI asks for one model a file; this server is lenient there)."""
    if len(data) > knobs.max_bytes:
        return [], [_line_error("file_too_large", f"The batch input file is larger than the {knobs.max_bytes} "
                                                  "byte maximum.")]
    # JSONL lines end at "\n" only: str.splitlines() would also cut at U+2028 and the like, which JSON
    # encoders (orjson among them) leave raw inside strings.
    rows = [r.removesuffix("\r") for r in data.decode("utf-8", "replace").split("\n")]
    while rows and not rows[-1].strip():
        rows.pop()
    if not rows:
        return [], [_line_error("empty_file", "The batch input file is empty.")]
    if len(rows) > knobs.max_lines:
        return [], [_line_error("too_many_tasks", f"The batch input file is larger than the {knobs.max_lines} "
                                                  "maximum number of requests.")]
    lines, errors, seen = [], [], set()
    for n, row in enumerate(rows, 1):
        try:
            obj = orjson.loads(row)
        except orjson.JSONDecodeError:
            obj = None
        if not isinstance(obj, dict):
            errors.append(_line_error("invalid_json_line", "This line is not parseable as valid JSON.", n))
            continue
        missing = [k for k in ("custom_id", "method", "url", "body") if k not in obj]
        if missing:
            errors.append(_line_error("missing_required_parameter", f"Missing required parameter: '{missing[0]}'.",
                                      n, missing[0]))
            continue
        if not isinstance(obj["custom_id"], str) or not isinstance(obj["body"], dict):
            bad = "custom_id" if not isinstance(obj["custom_id"], str) else "body"
            errors.append(_line_error("invalid_type", f"Invalid type for '{bad}'.", n, bad))
            continue
        if obj["method"] != "POST":
            errors.append(_line_error("invalid_method", "The method for this request must be POST.", n, "method"))
            continue
        if obj["url"] != endpoint:
            errors.append(_line_error("url_mismatch", "The URL provided for this request does not match the batch "
                                                      "endpoint.", n, "url"))
            continue
        if obj["custom_id"] in seen:
            errors.append(_line_error("duplicate_custom_id", "The custom_id for this request is a duplicate of "
                                                             "another request. The custom_id parameter must be unique "
                                                             "for each individual request in a batch.", n, "custom_id"))
            continue
        seen.add(obj["custom_id"])
        lines.append(obj)
    return lines, errors[:1000]


# --- processing -----------------------------------------------------------------------------------------------
class Processor:
    """Runs one batch through its lifecycle on the server's loop."""

    def __init__(self, server_state: Any, bs: BatchState, b: Batch):
        self.st, self.bs, self.b = server_state, bs, b

    def _stamp(self, status: str) -> None:
        self.b.status = status
        self.b.stamps[f"{status}_at"] = int(time.time())

    async def run(self) -> None:
        b, bs = self.b, self.bs
        await asyncio.sleep(bs.knobs.validating_s)
        if b.cancel_requested:  # cancelled before anything ran: no results to keep
            return await self._finish("cancelled", None)
        f = bs.files.get(b.input_file_id)
        lines, errors = validate(f.data if f else b"", b.endpoint, bs.knobs)
        if f is None:
            errors = [_line_error("file_not_found", f"No such File object: {b.input_file_id}")]
        if not errors:
            errors = self._admit(lines)
        if errors:
            b.errors = errors
            bs.failed_codes.update(e["code"] for e in errors)
            return await self._finish("failed", None)
        b.lines, b.model = lines, lines[0]["body"].get("model")
        self._stamp("in_progress")
        keep = None  # lines answered before a forced expiry
        if bs.expire_armed:
            bs.expire_armed = False
            keep = len(lines) - round(bs.knobs.expire_first * len(lines))
        stop = await self._answer_lines(keep)
        if stop == "expired":
            return await self._finish("expired", "batch_expired")
        if stop == "cancelled":
            return await self._finish("cancelled", "batch_cancelled")
        self._stamp("finalizing")
        await asyncio.sleep(bs.knobs.finalizing_s)
        await self._finish("completed", None)

    def _admit(self, lines: list[dict]) -> list[dict]:
        """Reserve the batch's estimated prompt tokens per model, or the token_limit_exceeded error."""
        from acd.testing.answers import usage_of

        tokens: Counter = Counter()
        for ln in lines:
            tokens[ln["body"].get("model") or ""] += usage_of(self.st, ln["body"], "")[0]
        limit = self.bs.knobs.enqueued_token_limit
        if limit is not None:
            queued = self.bs.enqueued()
            for model, n in sorted(tokens.items()):
                if queued[model] + n > limit:
                    return [_line_error("token_limit_exceeded", (
                        f"Enqueued token limit reached for {model} in organization org-acd-test. Limit: {limit:,} "
                        "enqueued tokens. Please try again once some in_progress batches have been completed."))]
        self.b.tokens_by_model = dict(tokens)
        return []

    async def _answer_lines(self, keep: int | None) -> str | None:
        """Answer lines in input order at knobs.lines_per_s (a token bucket read each step, so a knob change
        applies at once; 0 holds the batch); the reason processing stopped early, or None."""
        b, bs = self.b, self.bs
        allowance, last, i = (1.0 if bs.knobs.lines_per_s > 0 else 0.0), time.monotonic(), 0
        run = 0  # lines answered since the loop last let the HTTP handlers in
        while True:
            if b.cancel_requested:
                return "cancelled"
            if (keep is not None and i >= keep) or time.time() >= b.expires_at:
                return "expired"
            if i == len(b.lines):
                return None
            now, rate = time.monotonic(), bs.knobs.lines_per_s
            allowance, last = min(allowance + (now - last) * rate, max(1.0, rate * 0.05)), now  # <= 50 ms ahead
            if allowance >= 1:
                self._answer(b.lines[i])
                i, allowance, run = i + 1, allowance - 1, run + 1
                if run >= 100:  # however high the rate, polls and cancels are served between runs of lines
                    run = 0
                    await asyncio.sleep(0)
            else:
                run = 0
                await asyncio.sleep(0.01)

    def _answer(self, line: dict) -> None:
        from acd.testing.answers import answer, request_hash

        b, bs, body = self.b, self.bs, line["body"]
        h = request_hash(body)
        bs.attempts[h] += 1
        fault = self.st.pick_fault(bs.attempts[h], BATCH_FAULT_KINDS)
        outcome, status, payload = answer(self.st, body, fault)
        bs.per_custom_id[line["custom_id"]] += 1
        bs.line_outcomes[outcome] += 1
        if status == 200:
            b.completed += 1
        else:
            b.failed += 1
        if outcome in ("ok", "length"):
            u = payload["usage"]
            for c in (b.usage, bs.usage):
                c.update(prompt_tokens=u["prompt_tokens"], completion_tokens=u["completion_tokens"])
            bs.usage_by_model[body.get("model") or ""].update(prompt_tokens=u["prompt_tokens"],
                                                              completion_tokens=u["completion_tokens"], requests=1)
        rid = _hex(b.id, line["custom_id"])
        b.results[line["custom_id"]] = {
            "id": "batch_req_" + rid, "custom_id": line["custom_id"],
            "response": {"status_code": status, "request_id": "req_" + rid, "body": payload}, "error": None}

    async def _finish(self, status: str, unfinished_code: str | None) -> None:
        """Write the output and error files (only those with lines) and enter the final status."""
        b, bs = self.b, self.bs
        if status == "cancelled" and b.status != "cancelling":
            self._stamp("cancelling")
        if status == "cancelled":
            await asyncio.sleep(bs.knobs.finalizing_s)
        if status in ("completed", "expired", "cancelled") and b.lines:
            ok = [r for r in b.results.values() if r["response"]["status_code"] == 200]
            bad = [r for r in b.results.values() if r["response"]["status_code"] != 200]
            message = {"batch_expired": "This request could not be executed before the completion window expired.",
                       "batch_cancelled": "This request was cancelled before it could be executed."}
            for ln in b.lines:
                if ln["custom_id"] not in b.results:
                    bad.append({"id": "batch_req_" + _hex(b.id, ln["custom_id"], "unfinished"),
                                "custom_id": ln["custom_id"], "response": None,
                                "error": {"code": unfinished_code, "message": message[unfinished_code]}})
            b.output_file_id = self._write(ok, "output")
            b.error_file_id = self._write(bad, "error")
        self._stamp(status)
        bs.final[status] += 1

    def _write(self, rows: list[dict], kind: str) -> str | None:
        if not rows:
            return None
        # OpenAI keeps no input order: shuffle (reproducibly) so clients must match lines by custom_id.
        rows.sort(key=lambda r: r["custom_id"])
        random.Random(f"{self.bs.seed}:{self.b.seq}:{kind}").shuffle(rows)
        f = StoredFile(self.bs.new_id("file-"), f"{self.b.id}_{kind}.jsonl", "batch_output",
                       b"".join(orjson.dumps(r) + b"\n" for r in rows), int(time.time()))
        self.bs.files[f.id] = f
        return f.id


# --- routes ------------------------------------------------------------------------------------------------------
def _multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """name -> (filename, bytes) of a multipart/form-data body. The stdlib's MIME parser does this exactly;
    Starlette's own form parsing would need python-multipart for this one test-double route."""
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    if not msg.is_multipart():
        return {}
    return {p.get_param("name", header="content-disposition"): (p.get_filename(), p.get_payload(decode=True) or b"")
            for p in msg.iter_parts()}


def _page(items: list[dict], after: str | None, limit: int) -> dict:
    """OpenAI's cursor page: the items after the one with id `after`, at most `limit`."""
    if after:
        ids = [it["id"] for it in items]
        items = items[ids.index(after) + 1:] if after in ids else []
    data = items[:limit]
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": len(items) > limit}


def routes(state: Any) -> list:
    """The Starlette routes of the Files and Batches APIs over `state.batch` (a BatchState)."""
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from acd.testing.answers import auth_error

    bs: BatchState = state.batch

    def js(obj: Any, status: int = 200) -> Response:
        return Response(orjson.dumps(obj), status_code=status, media_type="application/json")

    def guarded(handler):
        async def wrapped(request: Request) -> Response:
            if (denied := auth_error(state, request)) is not None:
                return js(denied, 401)
            return await handler(request)
        return wrapped

    def limit_of(request: Request, default: int, top: int) -> int | Response:
        try:
            n = int(request.query_params.get("limit", default))
        except ValueError:
            n = 0
        return n if 1 <= n <= top else js(*_error(f"Invalid 'limit': must be between 1 and {top}.", 400, "limit"))

    async def upload(request: Request) -> Response:
        form = _multipart(request.headers.get("content-type", ""), await request.body())
        purpose = form.get("purpose", (None, b""))[1].decode()
        if "file" not in form or not form["file"][0]:
            return js(*_error("Missing required parameter: 'file'.", 400, "file"))
        if not purpose:
            return js(*_error("Missing required parameter: 'purpose'.", 400, "purpose"))
        if purpose not in ("assistants", "batch", "fine-tune", "vision", "user_data", "evals"):
            return js(*_error(f"Invalid value for 'purpose': {purpose!r}.", 400, "purpose"))
        filename, data = form["file"]
        if purpose == "batch":  # OpenAI's check at upload: a .jsonl of text; the lines are checked by the batch
            if not filename.endswith(".jsonl"):
                return js(*_error("Invalid file format for Batch API. Must be .jsonl", 400, "file"))
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                return js(*_error("Invalid file format for Batch API. The file must be UTF-8 encoded JSONL.", 400,
                                  "file"))
        f = StoredFile(bs.new_id("file-"), filename, purpose, data, int(time.time()))
        bs.files[f.id] = f
        bs.files_uploaded += 1
        return js(f.obj())

    def file_or_404(file_id: str) -> StoredFile | Response:
        f = bs.files.get(file_id)
        return f if f is not None else js(*_error(f"No such File object: {file_id}", 404, "id"))

    async def get_file(request: Request) -> Response:
        f = file_or_404(request.path_params["file_id"])
        return f if isinstance(f, Response) else js(f.obj())

    async def file_content(request: Request) -> Response:
        f = file_or_404(request.path_params["file_id"])
        return f if isinstance(f, Response) else Response(f.data, media_type="application/octet-stream")

    async def delete_file(request: Request) -> Response:
        f = file_or_404(request.path_params["file_id"])
        if isinstance(f, Response):
            return f
        del bs.files[f.id]
        return js({"id": f.id, "object": "file", "deleted": True})

    async def list_files(request: Request) -> Response:
        limit = limit_of(request, 10_000, 10_000)
        if isinstance(limit, Response):
            return limit
        purpose = request.query_params.get("purpose")
        items = [f.obj() for f in bs.files.values() if purpose in (None, f.purpose)]
        if request.query_params.get("order", "desc") == "desc":
            items.reverse()
        return js(_page(items, request.query_params.get("after"), limit))

    async def create_batch(request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            return js(*_error("We could not parse the JSON body of your request.", 400))
        for key in ("input_file_id", "endpoint", "completion_window"):
            if not body.get(key):
                return js(*_error(f"Missing required parameter: '{key}'.", 400, key))
        if body["endpoint"] != ENDPOINT:
            return js(*_error(f"Invalid value for 'endpoint': this server batches only {ENDPOINT}.", 400, "endpoint"))
        if body["completion_window"] != "24h":
            return js(*_error("Invalid value for 'completion_window': only '24h' is supported.", 400,
                              "completion_window"))
        meta = body.get("metadata")
        if meta is not None and (not isinstance(meta, dict) or len(meta) > 16 or not all(
                isinstance(k, str) and len(k) <= 64 and isinstance(v, str) and len(v) <= 512 for k, v in meta.items())):
            return js(*_error("Invalid 'metadata': at most 16 string pairs, keys up to 64 and values up to 512 "
                              "characters.", 400, "metadata"))
        f = bs.files.get(body["input_file_id"])
        if f is None:
            return js(*_error(f"No such File object: {body['input_file_id']}", 404, "input_file_id"))
        if f.purpose != "batch":
            return js(*_error("The input file must have been uploaded with purpose 'batch'.", 400, "input_file_id"))
        now = time.time()
        b = Batch(bs.new_id("batch_"), f.id, ENDPOINT, "24h", meta, now, now + bs.knobs.completion_window_s,
                  seq=bs.batches_total)
        bs.batches_total += 1
        bs.batches[b.id] = b
        bs.batches_created += 1
        task = asyncio.get_running_loop().create_task(Processor(state, bs, b).run())
        bs.tasks.add(task)
        task.add_done_callback(bs.tasks.discard)
        return js(b.obj())

    def batch_or_404(batch_id: str) -> Batch | Response:
        b = bs.batches.get(batch_id)
        return b if b is not None else js(*_error(f"No batch found with id '{batch_id}'.", 404, "batch_id"))

    async def get_batch(request: Request) -> Response:
        b = batch_or_404(request.path_params["batch_id"])
        return b if isinstance(b, Response) else js(b.obj())

    async def cancel_batch(request: Request) -> Response:
        b = batch_or_404(request.path_params["batch_id"])
        if isinstance(b, Response):
            return b
        if b.status not in ("validating", "in_progress", "cancelling"):
            return js(*_error(f"Cannot cancel a batch with status '{b.status}'.", 409))
        if not b.cancel_requested:  # the processor notices and ends it as "cancelled" with partial results
            b.cancel_requested = True
            b.status = "cancelling"
            b.stamps["cancelling_at"] = int(time.time())
        return js(b.obj())

    async def list_batches(request: Request) -> Response:
        limit = limit_of(request, 20, 100)
        if isinstance(limit, Response):
            return limit
        items = [b.obj() for b in reversed(bs.batches.values())]  # newest first, as OpenAI lists them
        return js(_page(items, request.query_params.get("after"), limit))

    async def set_knobs(request: Request) -> Response:
        from pydantic import ValidationError

        try:
            return js(bs.set_knobs(**orjson.loads(await request.body() or b"{}")).model_dump())
        except (ValidationError, TypeError, orjson.JSONDecodeError) as e:
            return js({"error": {"message": str(e), "type": "invalid_request_error"}}, 400)

    return [
        Route("/v1/files", guarded(upload), methods=["POST"]),
        Route("/v1/files", guarded(list_files), methods=["GET"]),
        Route("/v1/files/{file_id}", guarded(get_file), methods=["GET"]),
        Route("/v1/files/{file_id}", guarded(delete_file), methods=["DELETE"]),
        Route("/v1/files/{file_id}/content", guarded(file_content), methods=["GET"]),
        Route("/v1/batches", guarded(create_batch), methods=["POST"]),
        Route("/v1/batches", guarded(list_batches), methods=["GET"]),
        Route("/v1/batches/{batch_id}", guarded(get_batch), methods=["GET"]),
        Route("/v1/batches/{batch_id}/cancel", guarded(cancel_batch), methods=["POST"]),
        Route("/admin/batch", set_knobs, methods=["POST"]),
    ]
