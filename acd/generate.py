"""Generate and check one lot: instruction → chosen → rejected through a backend, then the checks.

Pairs that fail a check are regenerated (attempt k+1 asks the backend for different wording) up to
checks.max_attempts, then kept with check_passed=False and their reasons (they never reach the dataset).
A request the backend could not serve after its own retries becomes a dead letter; the rest of the lot
goes on.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from acd.backends.base import GenRequest, GenResult
from acd.records import PAIR_SCHEMA, dumps

ROLE_ORDER = ("instruct", "chosen", "rejected")


def _request(role: str, pair: dict, media: dict, attempt: int, backend) -> GenRequest:
    req = GenRequest(
        request_id=f"{pair['pair_id']}:{role}:a{attempt}",
        role=role,
        pair=pair,
        media=media,
        params={"attempt": attempt},
    )
    if getattr(backend, "name", "") != "grounded":
        # Model backends need rendered chat messages; the template id and hash become provenance.
        from acd.prompts import render

        req.messages, req.template_id, req.template_hash = render(role, pair, media, pair.get("rejection_strategy"))
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


def _run_role(role, pairs, media_by_key, attempt, backend, deadletters, timings=None) -> dict[str, GenResult]:
    """One batched backend call for `role` over `pairs`; returns ok results by pair_id."""
    requests = [_request(role, p, media_by_key[p["media_key"]], attempt, backend) for p in pairs]
    if not requests:
        return {}
    t0 = time.perf_counter()
    results = backend.generate(requests)
    _add(timings, "backend", t0)
    by_request = {r.request_id: r for r in results}
    ok = {}
    for req, pair in zip(requests, pairs):
        res = by_request.get(req.request_id)
        if res is None:
            deadletters.append(dict(pair_id=pair["pair_id"], lot_id=pair["lot_id"], role=role, attempt=attempt,
                                    error="missing_result"))
        elif res.status != "ok" or not (res.text or "").strip():
            deadletters.append(dict(pair_id=pair["pair_id"], lot_id=pair["lot_id"], role=role, attempt=attempt,
                                    error=res.error or "empty_text"))
        else:
            res.template_id, res.template_hash = req.template_id, req.template_hash  # provenance travels along
            ok[pair["pair_id"]] = res
    return ok


def _with_length(instruction: str, pair: dict) -> str:
    """Length control is composed onto the instruction as the release does: its sentence, appended, verbatim.
    A model-written instruction that already carries it is left alone."""
    instruction = instruction.strip()
    sentence = pair.get("length_constraint")
    if sentence and sentence not in instruction:
        instruction = f"{instruction} {sentence}"
    return instruction


def generate_lot(
    plan: pa.Table,
    media: pa.Table,
    run_dir: Path,
    backend,
    checks_cfg: dict[str, Any],
    judge=None,
    timings: dict[str, float] | None = None,
    attempt_offset: int = 0,
) -> tuple[pa.Table, list[dict[str, Any]]]:
    """timings (optional): seconds are added under "backend" (backend.generate), "check" (check_lot,
    judge included) and "judge" (the judge's model calls alone). attempt_offset: a lot regenerated after
    review rejected it starts past the attempts already used, so the backend writes new captions."""
    from acd.checks.lot import check_lot

    media_by_key = {}
    for row in media.to_pylist():
        row["path"] = str(Path(run_dir) / row["uri"])
        media_by_key[row["media_key"]] = row
    if hasattr(judge, "bind_media"):  # an LLM judge sends the pair's media with its prompt
        judge = judge.bind_media(media_by_key)
    if timings is not None and judge is not None:
        judge = _TimedJudge(judge, timings)

    max_attempts = int(checks_cfg.get("max_attempts", 3))
    pending = plan.to_pylist()
    final: dict[str, dict] = {}
    deadletters: list[dict] = []

    for attempt in range(attempt_offset, attempt_offset + max_attempts):
        if not pending:
            break
        q = _run_role("instruct", pending, media_by_key, attempt, backend, deadletters, timings)
        pending = [dict(p, instruction=_with_length(q[p["pair_id"]].text, p)) for p in pending if p["pair_id"] in q]
        c = _run_role("chosen", pending, media_by_key, attempt, backend, deadletters, timings)
        pending = [dict(p, chosen=c[p["pair_id"]].text.strip()) for p in pending if p["pair_id"] in c]
        # q-c-c pairs need no rejected call: the existing caption is the chosen one by construction.
        to_reject = [p for p in pending if not p["is_qcc"]]
        a = _run_role("rejected", to_reject, media_by_key, attempt, backend, deadletters, timings)
        generated = []
        for p in pending:
            if p["is_qcc"]:
                p["rejected"] = p["chosen"]
            elif p["pair_id"] in a:
                p["rejected"] = a[p["pair_id"]].text.strip()
            else:
                continue
            res = c[p["pair_id"]]
            p.update(
                backend=res.backend or backend.name,
                model=res.model,
                model_revision=res.model_revision,
                prompt_template_id=getattr(res, "template_id", "") or f"{res.backend}/{p['modality']}/{p['instruction_type']}",
                prompt_template_hash=getattr(res, "template_hash", "") or res.model_revision,
                gen_params=dumps({"attempt": attempt, **(getattr(backend, "params", None) or {})}),
                attempts=attempt + 1,
            )
            generated.append(p)
        if not generated:
            pending = []
            continue
        t0 = time.perf_counter()
        checked = check_lot(pa.Table.from_pylist(generated, schema=_partial_schema(generated)), checks_cfg, judge,
                            groundings={k: m.get("grounding") for k, m in media_by_key.items()}).to_pylist()
        _add(timings, "check", t0)
        pending = []
        for row in checked:
            if row["check_passed"] or attempt == attempt_offset + max_attempts - 1:
                final[row["pair_id"]] = row
            else:
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
    return pa.Table.from_pylist([{k: r.get(k) for k in PAIR_SCHEMA.names} for r in rows], schema=PAIR_SCHEMA), deadletters


def _partial_schema(rows: list[dict]) -> pa.Schema:
    present = set().union(*(r.keys() for r in rows))
    return pa.schema([f for f in PAIR_SCHEMA if f.name in present])
