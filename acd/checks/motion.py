"""Motion truth: what a video caption says about where a moving object is, held against its grounding.
Part of the fact check (acd/checks/factcheck.py calls `problems`; reason `fact_chosen`).

Blind readers rejected captions that pin a moving object to one place ("lies high on the left" for a star
that moves to the top right) and that let an object which leaves the frame end inside it ("When the video
ends, the black cat has reached the place in the bottom left corner." for a cat gone at 1.1 s). So, per
sentence (a poem's line):
  - a place stated for a moving object (start place != end place) carries its moment: a start, an end,
    a heading ("toward the lower left"), or a time; a start place is its start, an end place its end;
  - an object with a leave event is never in an end state ("ends", "settles", "reaches", "by the end") at a
    place inside the frame, unless the sentence also says it leaves; it never "stays in view";
  - a moving object never "stays in place";
  - an object that appears late is not somewhere "at the start" of the video.
Markers are data (schemas/checks.yaml `motion`). Which object a place belongs to: acd/checks/mentions.py.
"""
from __future__ import annotations

import re
from functools import lru_cache

from acd.checks.config import load_checks_spec
from acd.checks.mentions import (Mention, by_id, clause_of, clause_spans, object_mentions, owner, place_mentions,
                                 units)

_IT = re.compile(r"^\W*(?:it|its)\b")
_AFTER = re.compile(r",?\s+(?:at|by|in|near|toward|towards)\s+(?:the\s+)?(?:very\s+)?$")


@lru_cache(maxsize=1)
def _spec() -> dict:
    m = load_checks_spec()["motion"]

    def alt(ps):
        return re.compile("|".join(f"(?:{p})" for p in ps))

    return {
        "start": alt(m["start"]), "video_start": alt(m["video_start"]), "end": alt(m["end"]),
        "time": alt(m["time"]), "heading": re.compile(m["heading"]), "from": re.compile(m["from"]),
        "heading_verbs": re.compile(m["heading_verbs"]), "exit": re.compile(m["exit"]),
        "stays_in_frame": re.compile(m["stays_in_frame"]), "still": re.compile(m["still"]),
        "late_appear_s": float(m["late_appear_s"]), "negation": re.compile(m["negation"]),
    }


def _markers(low: str, a: int, b: int, skip: list[tuple[int, int]]) -> list[tuple[int, str]]:
    """(position, kind) of every moment marker in low[a:b], outside the place phrases (`skip`)."""
    sp = _spec()
    out = []
    for kind in ("start", "end", "time", "exit"):  # "leaves the frame low on the left": its exit is its moment
        for m in sp[kind].finditer(low, a, b):
            if not any(s <= m.start() < e for s, e in skip):
                out.append((m.start(), kind))
    return sorted(out)


def moment(low: str, place, spans, skip) -> str | None:
    """'start', 'end', 'heading', 'time' or 'exit' for a place phrase; None when its sentence states no moment."""
    sp = _spec()
    before = low[max(0, place.start - 12):place.start]
    if sp["from"].search(before):
        return "start"
    a, b = clause_of(spans, place.start)
    phrase_heads = place.phrase.startswith(("toward", "to "))
    if sp["heading"].search(before) or (phrase_heads and sp["heading_verbs"].search(low, a, b)):
        return "heading"
    marks = _markers(low, a, b, skip)
    # "in the top left corner at the start": a moment phrase right after the place is its moment
    right_after = [k for p, k in marks if place.end <= p and _AFTER.match(low, place.end, p)]
    if right_after:
        return right_after[0]
    prior = [k for p, k in marks if p < place.start]
    if prior:
        return prior[-1]
    if marks:
        return marks[0][1]
    marks = _markers(low, 0, len(low), skip)
    return min(marks, key=lambda pk: abs(pk[0] - place.start))[1] if marks else None


def problems(text: str, g: dict) -> list[str]:
    """Every motion statement of a video caption that its grounding contradicts; [] when none."""
    objs = by_id(g)
    if not objs:
        return []
    sp = _spec()
    moving = {i for i, o in objs.items() if o.get("position") and o.get("end_position")
              and o["position"] != o["end_position"]}
    leaves: dict[str, float] = {}
    appears: dict[str, float] = {}
    # a leave in the last frame is no leave for a reader: the object is at the edge when the video ends
    last = float(g.get("duration_s") or 1e9) - 1.0 / float(g.get("fps") or 8)
    for ev in g.get("events") or []:
        for i in ev.get("objects") or []:
            if ev.get("type") == "leave" and float(ev.get("t") or 0.0) < last:
                leaves.setdefault(i, float(ev.get("t") or 0.0))
            elif ev.get("type") == "appear":
                appears.setdefault(i, float(ev.get("t") or 0.0))
    out: list[str] = []
    # An unmarked place of a moving object, held until the whole caption is read: "One finds the black fish in
    # the lower left corner. By the end, the fish is at the bottom centre." reads as a start and an end (a blind
    # reader accepted it), so an unmarked place that is the object's start, followed later by its end place,
    # is its start. (index in out, unit number, object id, place's grid cell)
    unmarked: list[tuple[int, int, str, str]] = []
    ends_in: dict[str, list[int]] = {}
    prev_last: Mention | None = None
    for k, unit in enumerate(units(text)):
        low = unit.lower()
        ments = object_mentions(low, g)
        if not ments and prev_last is not None and _IT.match(low):
            # "It moves from right to left": the thing named last before (see acd/checks/reference.py)
            ments = [Mention(0, 2, prev_last.ids, prev_last.noun)]
        if ments:
            prev_last = ments[-1]
        spans = clause_spans(low)
        places = place_mentions(low)
        skip = [(p.start, p.end) for p in places]
        for p in places:
            mt = owner(p, ments, spans)
            if mt is None or len(mt.ids) != 1:
                continue
            oid = next(iter(mt.ids))
            o = objs[oid]
            when = moment(low, p, spans, skip)
            name = f"{o.get('colour', '')} {o['category']}".strip()
            if oid in leaves and when == "end" and not sp["exit"].search(low):
                out.append(f"motion: the {name} leaves the frame at {leaves[oid]:g} s; it does not end "
                           f"{p.phrase!r}")
            elif oid in moving:
                if when == "end":
                    ends_in.setdefault(oid, []).append(k)
                if when is None:
                    unmarked.append((len(out), k, oid, p.grid))
                    out.append(f"motion: one place {p.phrase!r} for the moving {name} "
                               f"({o['position']} -> {o['end_position']}) with no moment")
                elif when == "start" and p.grid != o["position"] and p.grid == o["end_position"]:
                    out.append(f"motion: the {name} starts {o['position']}, not {p.phrase!r}")
                elif when == "end" and p.grid != o["end_position"] and p.grid == o["position"]:
                    out.append(f"motion: the {name} ends {o['end_position']}, not {p.phrase!r}")
            if appears.get(oid, 0.0) > sp["late_appear_s"] and sp["video_start"].search(low) \
                    and not re.search(r"\b(?:appears?|shows? up|comes? into view|enters?|arrives?)\b", low):
                out.append(f"motion: the {name} appears at {appears[oid]:g} s, not at the start")
        for rx, bad, why in ((sp["stays_in_frame"], leaves, "leaves the frame"), (sp["still"], moving, "moves")):
            for m in rx.finditer(low):
                if sp["negation"].search(low[max(0, m.start() - 12):m.start()]):
                    continue
                near = [mt for mt in ments if len(mt.ids) == 1]
                a, b = clause_of(spans, m.start())
                near = [mt for mt in near if a <= mt.start < b] or (near if len(near) == 1 else [])
                for mt in near[:1]:
                    oid = next(iter(mt.ids))
                    if oid in bad:
                        out.append(f"motion: the {objs[oid]['category']} {why}; not {m.group(0)!r}")
    read_as_start = {i for i, k, oid, grid in unmarked
                     if grid == objs[oid]["position"] and any(j > k for j in ends_in.get(oid, []))}
    return [msg for i, msg in enumerate(out) if i not in read_as_start]
