"""The LLM judge: asks a model (role "judge", through any backend) whether a pair is a good preference pair.

The prompt (prompts/judge.yaml) asks for a JSON verdict {chosen_complies, rejected_worse, score 0-4,
reason}. Models wrap JSON in prose or code fences, use "yes"/"true"/1, or give scores as strings; the
parser accepts all of that and reports `parse_error` instead of guessing when there is no verdict.
"""
from __future__ import annotations

import copy

import json
import re
from typing import Any

from acd.backends.base import GenRequest

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)
_TRUE = {"true", "yes", "y", "1", "pass", "complies", "compliant"}
_FALSE = {"false", "no", "n", "0", "fail", "does not comply"}


def _bool(v: Any) -> bool | None:
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return bool(v)
    if isinstance(v, str):
        s = v.strip().lower()
        return True if s in _TRUE else False if s in _FALSE else None
    return None


def _json_objects(text: str):
    """Candidate JSON objects in a reply: fenced blocks first, then every balanced {...} span."""
    for m in _FENCE.finditer(text):
        yield m.group(1)
    depth, start, in_str, esc = 0, None, False, False
    for i, ch in enumerate(text):
        if in_str:
            esc = (ch == "\\") and not esc
            if ch == '"' and not esc:
                in_str = False
            continue
        if ch == '"':
            in_str, esc = True, False
        elif ch == "{":
            depth, start = depth + 1, i if depth == 0 else start
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0:
                yield text[start : i + 1]


def parse_verdict(text: str | None) -> dict[str, Any]:
    """A normalised verdict from a model reply; {"parse_error": ...} when none can be found."""
    if not text:
        return {"chosen_complies": None, "rejected_worse": None, "score": None, "reason": "", "parse_error": "empty"}
    for cand in _json_objects(text):
        try:
            obj = json.loads(cand)
        except json.JSONDecodeError:
            try:  # single quotes / trailing commas: the two most common near-JSON slips
                obj = json.loads(re.sub(r",\s*([}\]])", r"\1", cand.replace("'", '"')))
            except json.JSONDecodeError:
                continue
        if not isinstance(obj, dict) or "chosen_complies" not in obj:
            continue
        score = obj.get("score")
        try:
            score = min(4.0, max(0.0, float(score))) if score is not None else None
        except (TypeError, ValueError):
            score = None
        return {"chosen_complies": _bool(obj.get("chosen_complies")), "rejected_worse": _bool(obj.get("rejected_worse")),
                "score": score, "reason": str(obj.get("reason") or "")[:500], "parse_error": None}
    return {"chosen_complies": None, "rejected_worse": None, "score": None, "reason": text[:200],
            "parse_error": "no_json_verdict"}


class LLMJudge:
    """`LLMJudge(backend).judge(pairs)`: pairs are dicts with the PAIR columns (instruction, chosen, rejected,
    modality, instruction_type, length_constraint, ...) plus a "media" dict (the media row + "path")."""

    def __init__(self, backend, params: dict[str, Any] | None = None):
        self.backend = backend
        self.params = params or {"temperature": 0.0}

    def judge(self, pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from acd.prompts import render

        requests = []
        for i, p in enumerate(pairs):
            media = p.get("media") or {}
            messages, tid, th = render("judge", p, media)
            requests.append(GenRequest(request_id=f"{p.get('pair_id', i)}:judge", role="judge", pair=p, media=media,
                                       messages=messages, params=dict(self.params), template_id=tid, template_hash=th))
        by_id = {r.request_id: r for r in self.backend.generate(requests)}
        out = []
        for req in requests:
            res = by_id.get(req.request_id)
            if res is None or res.status != "ok":
                v = {"chosen_complies": None, "rejected_worse": None, "score": None, "reason": "",
                     "parse_error": f"request_failed: {res.error if res else 'missing_result'}"}
            else:
                v = parse_verdict(res.text)
            v.update(pair_id=req.pair.get("pair_id"), model=res.model if res else "", template_id=req.template_id,
                     template_hash=req.template_hash)
            out.append(v)
        return out


class LLMCheckJudge:
    """The LLM judge as the check stage sees it: `verdicts(rows)` over pair dicts of one lot.

    The check stage works on tables without media; this adapter looks each pair's media up by key
    (bind_media per lot) so the judge prompt carries the image, frames or audio.
    """

    def __init__(self, backend, params: dict[str, Any] | None = None):
        self.inner = LLMJudge(backend, params)
        self.media_by_key: dict[str, dict[str, Any]] = {}

    def bind_media(self, media_by_key: dict[str, dict[str, Any]]) -> "LLMCheckJudge":
        """A judge for one lot's media. A copy, not self: the build-acd flow runs lots on threads that share
        one Build (and its judge), so binding in place would hand one lot's judge another lot's media."""
        bound = copy.copy(self)
        bound.media_by_key = media_by_key
        return bound

    def verdicts(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self.inner.judge([dict(r, media=self.media_by_key.get(r["media_key"], {})) for r in rows])
