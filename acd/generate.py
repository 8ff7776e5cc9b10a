"""Generate and check one lot: instruction, then chosen and rejected, through a backend, then the checks.

Two ways to drive a backend, same rows out:
  * async backends (openai, and anything offering `agenerate`): each pair is a chain of requests on the
    process's backend loop (instruction, then chosen and rejected together) and moves on the moment the
    instruction returns; no barrier per role, and every lot in flight shares the endpoints' slots
    (acd.backends.aio);
  * batch backends (grounded, vllm): one batch per role.
Pairs that fail a check are regenerated (attempt k+1 asks the backend for different wording) up to
checks.max_attempts (async backends: a pair failing its own deterministic checks is asked again at once, in
its chain; what only the lot can judge, near-duplicates and the judge's sample, regenerates after the lot), then kept with check_passed=False and their reasons (they never reach the dataset).
A request the backend could not serve after its own retries becomes a dead letter; the rest of the lot
goes on. Rows come out in plan order, dead letters sorted, so a lot's bytes never depend on the order in
which its requests completed.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from acd.backends.base import GenRequest, GenResult, supports_async
from acd.errors import BudgetExhausted
from acd.prompts import with_length as _with_length
from acd.records import PAIR_SCHEMA, dumps

ROLE_ORDER = ("instruct", "chosen", "rejected")
_LOT_TICKETS = itertools.count()  # lots started earlier get their requests served first
# ... but every instruction before any caption: an instruction opens two caption requests, so sending it first
# keeps the most work queued for the slots, and the build's end (the last chains, slots going idle) is shortest.
_CAPTION_RANK = 1 << 40
# Lots of a model backend run many at a time on threads of one process, in two pipelined phases:
#   generation: a lot starts once the pairs still in flight (unfinished chains of earlier lots) leave room for
#           it under a budget of a few times the endpoint's slots: a lot whose stragglers wait on a hung
#           request or a backoff no longer holds a place, so its neighbours keep the slots busy. Bounded
#           memory; slots go to the oldest lot first (request priority).
#   checks: CPU work (the offline judge's embeddings, one torch thread each), one lot per core at a time; a
#           lot waiting for its checks holds no generation place.
# (Measured here: lots admitted by count, each holding its place through its checks, kept the endpoint 19%
# busy.)
_CHECK_SLOTS = threading.Semaphore(int(os.environ.get("ACD_CHECK_THREADS", 0)) or max(1, os.cpu_count() or 2))
_ADMISSIONS: dict[int, "_Admission"] = {}
_ADMISSIONS_LOCK = threading.Lock()


class _Admission:
    """A budget of pairs in flight shared by a process's lot threads (thread-safe; chains leave it from the
    backend loop as they finish)."""

    def __init__(self, budget: int):
        self.budget, self.active = max(1, budget), 0
        self._cond = threading.Condition()
        self._waiting: list[int] = []  # the sizes of the lots waiting to enter

    def _fits(self, n: int) -> bool:
        # A lot bigger than the budget still gets in, alone.
        return self.active == 0 or self.active + n <= self.budget

    def enter(self, n: int) -> None:
        with self._cond:
            self._waiting.append(n)
            try:
                self._cond.wait_for(lambda: self._fits(n))
            finally:
                self._waiting.remove(n)
            self.active += n

    def leave(self, n: int = 1) -> None:
        with self._cond:
            self.active -= n
            # Wake the waiting lots only when one of them now fits: a finished pair is not a reason to wake
            # 64 threads (measured: notify_all on every pair cost the request loop's thread 1.6 s of a 42 s
            # build in GIL hand-offs).
            if self._waiting and self._fits(min(self._waiting)):
                self._cond.notify_all()


def _admission(backend, budget: int) -> _Admission:
    with _ADMISSIONS_LOCK:
        if id(backend) not in _ADMISSIONS:
            _ADMISSIONS[id(backend)] = _Admission(budget)
        return _ADMISSIONS[id(backend)]


def _request(role: str, pair: dict, media: dict, attempt: int, backend, priority: int = 0,
             inline_media: bool = True) -> GenRequest:
    req = GenRequest(
        request_id=f"{pair['pair_id']}:{role}:a{attempt}",
        role=role,
        pair=pair,
        media=media,
        params={"attempt": attempt, "sample_seed": int(pair.get("seed") or 0)},
        priority=priority if role == "instruct" else priority + _CAPTION_RANK,
    )
    caps = getattr(backend, "capabilities", None)  # a backend that declares none is a model backend
    if caps is None or not caps.needs_grounding:
        # Model backends need rendered chat messages (a writer from grounding does not); the template id and
        # hash become provenance.
        from acd.prompts import render

        req.messages, req.template_id, req.template_hash = render(role, pair, media, pair.get("rejection_strategy"),
                                                                  inline_media=inline_media)
    return req


def _add(timings: dict | None, key: str, t0: float) -> None:
    if timings is not None:
        timings[key] = timings.get(key, 0.0) + (time.perf_counter() - t0)


class _TimedJudge:
    """Pass-through to a judge that adds the seconds spent in its model calls to timings["judge"]."""

    def __init__(self, judge, timings: dict):
        self._judge, self._timings = judge, timings

    def __getattr__(self, name):
        attr = getattr(self._judge, name)
        if name not in ("prefetch", "compliance", "verdicts") or not callable(attr):
            return attr

        def timed(*a, **kw):
            t0 = time.perf_counter()
            try:
                return attr(*a, **kw)
            finally:
                _add(self._timings, "judge", t0)

        return timed


def _deadletter(pair: dict, role: str, attempt: int, res: GenResult | None) -> dict | None:
    """None when the result is usable, else the dead-letter row for it."""
    if res is None:
        error = "missing_result"
    elif res.status != "ok" or not (res.text or "").strip():
        error = res.error or "empty_text"
    else:
        return None
    return dict(pair_id=pair["pair_id"], lot_id=pair["lot_id"], role=role, attempt=attempt, error=error)


def _apply(role: str, pair: dict, res: GenResult) -> dict:
    if role == "instruct":
        return dict(pair, instruction=_with_length(res.text, pair))
    if role == "chosen":
        return dict(pair, chosen=res.text.strip())
    return dict(pair, rejected=res.text.strip())


def _finish(pair: dict, chosen: GenResult, backend, attempt: int) -> dict:
    """Provenance (from the chosen caption's result) once every role of the pair has its text."""
    if pair["is_qcc"]:
        pair["rejected"] = pair["chosen"]  # q-c-c: the existing caption is the chosen one by construction
    pair.update(
        backend=chosen.backend or backend.name,
        model=chosen.model,
        model_revision=chosen.model_revision,
        prompt_template_id=getattr(chosen, "template_id", "") or f"{chosen.backend}/{pair['modality']}/{pair['instruction_type']}",
        prompt_template_hash=getattr(chosen, "template_hash", "") or chosen.model_revision,
        gen_params=dumps({"attempt": attempt, **(getattr(backend, "params", None) or {})}),
        attempts=attempt + 1,
    )
    return pair


def _roles(pair: dict) -> tuple[str, ...]:
    # q-c-c pairs need no rejected call.
    return ROLE_ORDER[:2] if pair["is_qcc"] else ROLE_ORDER


def _note_usage(sink: list | None, pair: dict, role: str, attempt: int, res: GenResult | None) -> None:
    """One row per answered request (acd.cost.usage_schema): what the server reported it used."""
    if sink is not None and res is not None and res.status == "ok":
        u = res.usage or {}
        sink.append({"pair_id": pair["pair_id"], "lot_id": pair["lot_id"], "modality": pair["modality"],
                     "role": role, "attempt": int(attempt), "model": res.model or "",
                     "prompt_tokens": int(u.get("prompt_tokens") or 0),
                     "completion_tokens": int(u.get("completion_tokens") or 0), "cached": bool(res.cached)})


def _by_role_batches(pending, media_by_key, attempt, backend, deadletters, timings, sink=None) -> list[dict]:
    """One batched backend call per role (batch backends)."""
    chosen: dict[str, GenResult] = {}
    for role in ROLE_ORDER:
        todo = [p for p in pending if role in _roles(p)]
        requests = [_request(role, p, media_by_key[p["media_key"]], attempt, backend) for p in todo]
        if not requests:
            continue
        t0 = time.perf_counter()
        results = {r.request_id: r for r in backend.generate(requests)}
        _add(timings, "backend", t0)
        ok: dict[str, GenResult] = {}
        failed: set[str] = set()
        for req, pair in zip(requests, todo):
            res = results.get(req.request_id)
            _note_usage(sink, pair, role, attempt, res)
            dl = _deadletter(pair, role, attempt, res)
            if dl:
                deadletters.append(dl)
                failed.add(pair["pair_id"])
                continue
            res.template_id, res.template_hash = req.template_id, req.template_hash  # provenance travels along
            ok[pair["pair_id"]] = res
            if role == "chosen":
                chosen[pair["pair_id"]] = res
        pending = [_apply(role, p, ok[p["pair_id"]]) if p["pair_id"] in ok else p
                   for p in pending if p["pair_id"] not in failed]
    return [_finish(p, chosen[p["pair_id"]], backend, attempt) for p in pending]


async def _chain_once(pair, media, attempt, backend, priority, sink=None) -> tuple[dict | None, list[dict]]:
    """One attempt at a pair: the instruction, then the chosen and the rejected caption side by side (neither
    prompt reads the other caption, see prompts/roles.yaml), each sent the moment its input is there. Two steps
    instead of three shortens every pair's life, and with it the build's end, where the last chains run with
    the slots mostly idle."""
    # Media stay lazy (a marker and a path) until the request is sent: thousands of requests wait for a
    # slot at once, and each would otherwise hold its base64 image or frames.
    def request(role, p):
        return _request(role, p, media, attempt, backend, priority, inline_media=False)

    res = await backend.agenerate(request("instruct", pair))
    _note_usage(sink, pair, "instruct", attempt, res)
    dl = _deadletter(pair, "instruct", attempt, res)
    if dl:
        return None, [dl]
    pair = _apply("instruct", pair, res)
    roles = _roles(pair)[1:]
    requests = [request(role, pair) for role in roles]
    results = await asyncio.gather(*(backend.agenerate(r) for r in requests))
    chosen = None
    for role, req, res in zip(roles, requests, results):
        _note_usage(sink, pair, role, attempt, res)
    for role, req, res in zip(roles, requests, results):
        dl = _deadletter(pair, role, attempt, res)
        if dl:  # one dead letter per pair and attempt: the first failed role, in role order
            return None, [dl]
        res.template_id, res.template_hash = req.template_id, req.template_hash
        if role == "chosen":
            chosen = res
        pair = _apply(role, pair, res)
    return _finish(pair, chosen, backend, attempt), []


def _rules_fail(row: dict, media: dict, content: tuple[str, ...], decontam=None) -> bool:
    """The pair's deterministic checks (the same check_pair the lot's checks run): a pair that fails them is
    asked again at once, inside its chain, instead of after its whole lot has been generated and checked.
    Waiting for the lot made every regeneration a new wave behind the lot's slowest request, and the last
    lots' waves ran at the build's end with the slots nearly idle."""
    from acd.checks.rules import check_pair, text_flags

    # The arguments check_lot passes (flags included), so its own check of the pair is a lookup.
    instruction, chosen, rejected = row.get("instruction"), row.get("chosen"), row.get("rejected")
    return bool(check_pair(instruction, chosen, rejected, bool(row["is_qcc"]), row.get("length_key"),
                           row.get("length_constraint"), flags=text_flags(instruction, chosen, rejected),
                           modality=row.get("modality"), grounding=media.get("grounding"),
                           instruction_type=row.get("instruction_type"),
                           rejection_strategy=row.get("rejection_strategy"), content=content,
                           decontam=decontam))


async def _chain(pair, media, first_attempt, last_attempt, backend, priority,
                 content: tuple[str, ...], decontam=None, sink=None) -> tuple[dict | None, list[dict]]:
    """A pair's attempts from first_attempt on, until one passes the pair's own checks or last_attempt ran."""
    for attempt in range(first_attempt, last_attempt + 1):
        row, dls = await _chain_once(pair, media, attempt, backend, priority, sink)
        if row is None or attempt == last_attempt or not _rules_fail(row, media, content, decontam):
            return row, dls
    raise AssertionError("unreachable")


def _by_pair_chains(pending, media_by_key, attempts, last_attempt, backend, deadletters, timings, priority,
                    admission: _Admission, content: tuple[str, ...], decontam=None, sink=None) -> list[dict]:
    """pending: pairs to generate; attempts: each pair's first attempt (by pair_id)."""
    from acd.backends import aio

    left = [0]  # chains that have left the admission budget

    async def chain(p):
        try:
            return await _chain(p, media_by_key[p["media_key"]], attempts[p["pair_id"]], last_attempt, backend,
                                priority, content, decontam, sink)
        finally:
            left[0] += 1
            admission.leave(1)

    async def run():
        tasks = [asyncio.ensure_future(chain(p)) for p in pending]
        try:
            return await asyncio.gather(*tasks)
        except BudgetExhausted:
            # The budget stops new requests, not the ones on the wire (they were within it): the lot's other
            # chains end at their own next request, their answers cached, instead of being cut off paid for.
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:  # one fatal error (no endpoint left) ends the lot's other chains too
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if callable(getattr(backend, "flush", None)):
                backend.flush()  # the lot's answers are in the request cache before its part is written

    admission.enter(len(pending))
    t0 = time.perf_counter()
    try:
        outcomes = aio.run(run())
    except BaseException:
        admission.leave(len(pending) - left[0])  # chains cancelled before they started
        raise
    _add(timings, "backend", t0)
    generated = []
    for row, dls in outcomes:  # gather keeps plan order
        deadletters.extend(dls)
        if row is not None:
            generated.append(row)
    return generated


def generate_lot(
    plan: pa.Table,
    media: pa.Table,
    run_dir: Path,
    backend,
    checks_cfg: Any,
    judge=None,
    timings: dict[str, float] | None = None,
    attempt_offset: int = 0,
    pairs_in_flight: int = 512,
    decontam=None,
    usage: list | None = None,
) -> tuple[pa.Table, list[dict[str, Any]]]:
    """timings (optional): seconds are added under "backend" (generation), "check" (check_lot, judge
    included) and "judge" (the judge's model calls alone). attempt_offset: a lot regenerated after review
    rejected it starts past the attempts already used, so the backend writes new captions. pairs_in_flight:
    the budget of unfinished pairs a process's lots share (async backends; see _Admission). decontam: the
    evaluation texts' n-gram index (acd.checks.decontam): a pair overlapping them fails eval_text_overlap and
    is asked again like any failure; None: not checked. usage (optional): a list that gets one
    acd.cost.usage_row per answered request."""
    from acd.checks.config import checks_settings
    from acd.checks.lot import check_lot

    checks_cfg = checks_settings(checks_cfg)

    media_by_key = {}
    for row in media.to_pylist():
        row["path"] = str(Path(run_dir) / row["uri"])
        media_by_key[row["media_key"]] = row
    if hasattr(judge, "bind_media"):  # an LLM judge sends the pair's media with its prompt
        judge = judge.bind_media(media_by_key)
    if timings is not None and judge is not None:
        judge = _TimedJudge(judge, timings)

    max_attempts = checks_cfg.max_attempts
    last_attempt = attempt_offset + max_attempts - 1
    pending = plan.to_pylist()
    next_attempt = {p["pair_id"]: attempt_offset for p in pending}  # each pair's next attempt
    final: dict[str, dict] = {}
    deadletters: list[dict] = []
    priority = next(_LOT_TICKETS)

    concurrent = supports_async(backend)
    while pending:
        if concurrent:  # each pair retries its own rule failures inside its chain
            generated = _by_pair_chains(pending, media_by_key, next_attempt, last_attempt, backend, deadletters,
                                        timings, priority, _admission(backend, pairs_in_flight),
                                        checks_cfg.content, decontam, usage)
        else:  # batch backends: every pending pair is at the same attempt
            generated = _by_role_batches(pending, media_by_key, next_attempt[pending[0]["pair_id"]], backend,
                                         deadletters, timings, usage)
        if not generated:
            break
        t0 = time.perf_counter()
        with _CHECK_SLOTS if concurrent else contextlib.nullcontext():
            checked = check_lot(pa.Table.from_pylist(generated, schema=_partial_schema(generated)), checks_cfg,
                                judge, groundings={k: m.get("grounding") for k, m in media_by_key.items()},
                                decontam=decontam).to_pylist()
        _add(timings, "check", t0)
        pending = []
        for row in checked:
            used = int(row["attempts"]) - 1  # the attempt this row came from (_finish)
            if row["check_passed"] or used >= last_attempt:
                final[row["pair_id"]] = row
            else:
                next_attempt[row["pair_id"]] = used + 1
                pending.append({k: row[k] for k in plan.column_names})

    # Pairs that only ever dead-lettered stay visible in the lot with the reason, never silently lost.
    reasons_by_pair: dict[str, set[str]] = {}
    for d in deadletters:
        reasons_by_pair.setdefault(d["pair_id"], set()).add(f"deadletter:{d['role']}:{d['error']}")
    for p in plan.to_pylist():
        if p["pair_id"] not in final:
            reasons = sorted(reasons_by_pair.get(p["pair_id"], {"not_generated"}))
            final[p["pair_id"]] = dict(p, check_passed=False, check_failures=reasons)
    rows = [final[pid] for pid in sorted(final)]
    deadletters.sort(key=lambda d: (d["pair_id"], d["attempt"], ROLE_ORDER.index(d["role"]), d["error"]))
    return pa.Table.from_pylist([{k: r.get(k) for k in PAIR_SCHEMA.names} for r in rows], schema=PAIR_SCHEMA), deadletters


def _partial_schema(rows: list[dict]) -> pa.Schema:
    present = set().union(*(r.keys() for r in rows))
    return pa.schema([f for f in PAIR_SCHEMA if f.name in present])
