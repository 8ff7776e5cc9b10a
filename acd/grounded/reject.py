"""Rejected captions: the same corruption strategies a model would be asked for, applied to facts.

Each strategy changes one thing about a good caption, so the pair teaches exactly that difference:
  hallucination       a value absent from the grounding (colour, object, sound, camera move) replaces
                      a true one, then the caption is written as usual from the corrupted facts;
  ignore_instruction  a fluent true caption of another type (instance: one that names the excluded object);
  length_violation    the chosen type and facts, fitted to a length that clearly breaks the constraint;
  weak_model          fewer facts, no attributes, vaguer words and one small slip (a weaker captioner);
  identical           the chosen caption itself (q-c-c).
"""
from __future__ import annotations

import json
import random
import re
from typing import Any

from acd.checks.length import count_words, satisfies, split_sentences
from acd.grounded.compose import Plan, Writer
from acd.grounded.facts import Facts
from acd.grounded.fit import Target
from acd.grounded.phrasing import Phrasing, cap
from acd.grounding import POSITIONS
from acd.taxonomy import LengthConstraint, load_taxonomy

STRATEGIES = ("hallucination", "ignore_instruction", "length_violation", "weak_model", "identical")


def reject(ph: Phrasing, facts: Facts, plan: Plan, lc: LengthConstraint | None, strategy: str,
           chosen: str, rng: random.Random) -> str:
    if strategy == "identical":
        return chosen
    if strategy == "length_violation" and lc is not None and lc.form != "none":
        text = _length_violation(ph, facts, plan, lc, rng, chosen)
    elif strategy == "hallucination":
        text = _hallucination(ph, facts, plan, lc, rng)
    elif strategy == "ignore_instruction":
        text = _ignore(ph, facts, plan, lc, rng)
    elif strategy in ("weak_model", "length_violation"):  # length_violation without a constraint: weak
        text = _weak(ph, facts, plan, lc, rng)
    else:
        raise ValueError(f"unknown rejection strategy {strategy!r}")
    if text.strip() == chosen.strip():  # must never pass for a q-c-c pair by accident
        text = _append_hallucination(ph, facts, text, rng)
    return text


# ------------------------------------------------------------------------------------ length
def violating_target(lc: LengthConstraint, rng: random.Random) -> Target:
    lo, hi = lc.bounds()
    if lc.unit == "words":
        options = []
        if hi == float("inf"):  # "more than n words": too short breaks it
            return Target("words", max(3, lo // 4), max(4, lo // 2), max(4, lo // 3))
        if lc.form != "word_max" and lo >= 15:
            options.append(Target("words", max(3, lo // 3), lo - max(5, lo // 4), lo // 2))
        long_lo, long_hi = hi + max(6, hi // 3), hi + max(20, hi // 2)
        options.append(Target("words", long_lo, long_hi, (long_lo + long_hi) // 2))
        return rng.choice(options)
    counts = []
    if lo == hi and lo >= 3:
        counts.append(lo - 2)
    counts.append(hi + 2)
    k = rng.choice(counts)
    return Target("sentences", k, k, k)


def _length_violation(ph, facts, plan, lc, rng, chosen) -> str:
    """The chosen type and facts at a length that clearly breaks the constraint (same claims, wrong size)."""
    text = Writer(ph, facts, rng).caption(plan, lc, target=violating_target(lc, rng))
    if not satisfies(text, lc):
        return text
    lo, hi = lc.bounds()
    sents = split_sentences(text if "\n" not in text else chosen)
    if lo > 1:  # too short: keep only the first sentences, below the lower bound
        short = []
        for s in sents:
            if lc.unit == "words" and count_words(" ".join(short + [s])) >= lo:
                break
            if lc.unit == "sentences" and len(short) + 1 >= lo:
                break
            short.append(s)
        if short and not satisfies(" ".join(short), lc):
            return " ".join(short)
    # too long: the facts once more in other words, until past the upper bound
    more = text
    for _ in range(6):
        if not satisfies(more, lc):
            return more
        more = f"{more} {Writer(ph, facts, rng).caption(plan, None)}"
    return more


# ------------------------------------------------------------------------------------ hallucination
def _fresh(values: list[str], present: set[str]) -> list[str]:
    return [v for v in values if not (set(re.findall(r"[a-z]+", v.lower())) & present)]


def _primary_id(facts: Facts, plan: Plan) -> str | None:
    """The object/sound a caption of this plan surely mentions (so a corruption of it shows)."""
    things = facts.things
    if plan.itype == "instance":
        ex = facts.by_id.get(plan.excluded_id)
        keep = [o for o in things if not ex or o["cat"] != ex["cat"]]
        return keep[0]["id"] if keep else None
    if plan.target_ids and plan.itype in ("appearance", "position", "action"):
        return plan.target_ids[0]
    if plan.itype == "perspective" and plan.viewer_id:
        rest = [o for o in things if o["id"] != plan.viewer_id]
        return rest[0]["id"] if rest else None
    if plan.itype == "event" and facts.events:
        return facts.events[0]["objs"][0]["id"]
    return things[0]["id"] if things else None


def hallucinate(ph: Phrasing, facts: Facts, plan: Plan, rng: random.Random) -> tuple[dict, str]:
    """A corrupted copy of the grounding and the hallucinated term it introduces."""
    g = json.loads(json.dumps(facts.g))
    present = facts.words()
    hv = ph.hallucination
    colours = _fresh(hv["colours"], present) or ["ultramarine"]
    if facts.modality == "audio":
        src = rng.choice(_fresh(hv["sounds"], present) or ["gong"])
        pid = _primary_id(facts, plan)
        for s in g.get("sounds") or []:
            if s.get("id") == pid:
                s["source"] = src
                return g, src
        g.setdefault("sounds", []).append({"id": "hx", "source": src, "start": 0.0, "end": 1.0, "loudness": "loud"})
        return g, src
    if plan.itype == "camera" and g.get("camera"):
        kind = (g["camera"].get("motion") or "static").split()[0]
        motion = rng.choice([m for m in hv["camera"] if m.split()[0] != kind])
        g["camera"]["motion"] = motion
        return g, motion.split()[0]
    if plan.itype == "background":
        scene = g.setdefault("scene", {})
        if scene.get("background_colour"):
            scene["background_colour"] = rng.choice(colours)
            return g, scene["background_colour"]
        scene["background"] = rng.choice(_fresh(hv["backgrounds"], present) or ["canyon"])
        return g, scene["background"]
    pid = _primary_id(facts, plan)
    for o in g.get("objects") or []:
        if o.get("id") == pid:
            if o.get("colour"):
                o["colour"] = rng.choice(colours)
                return g, o["colour"]
            o["category"] = rng.choice(_fresh(hv["objects"], present) or ["gadget"])
            return g, o["category"]
    new = rng.choice(_fresh(hv["objects"], present) or ["gadget"])
    g.setdefault("objects", []).insert(0, {"id": "hx", "category": new, "colour": rng.choice(colours),
                                           "size": "small", "position": rng.choice(POSITIONS)})
    return g, new


def _hallucination(ph, facts, plan, lc, rng) -> str:
    g, term = hallucinate(ph, facts, plan, rng)
    bad = Facts(facts.modality, g, facts.lex)
    if plan.excluded_id == "hx":
        plan = Plan(**{**plan.__dict__, "excluded_id": None})
    text = Writer(ph, bad, rng).caption(plan, lc)
    if not re.search(r"\b" + re.escape(term.lower()), text.lower()):
        text = _append_hallucination(ph, facts, text, rng)
    return text


def _append_hallucination(ph: Phrasing, facts: Facts, text: str, rng: random.Random) -> str:
    """Swap the last sentence (or poem line) for one about a thing that is not there."""
    present = facts.words()
    hv = ph.hallucination
    if facts.modality == "audio":
        src = rng.choice(_fresh(hv["sounds"], present) or ["gong"])
        ctx = facts.ctx({"s_indef": f"a loud {src}", "when": facts.lex["when_audio"]["end"]})
        line = ph.pick("sound_short", ctx, rng)[0]
    else:
        cat = rng.choice(_fresh(hv["objects"], present) or ["gadget"])
        colour = rng.choice(_fresh(hv["colours"], present) or ["ultramarine"])
        ctx = facts.ctx({"indef": f"a {colour} {cat}", "where": facts.lex["where"]["center"]})
        line = ph.pick("obj_short", ctx, rng)[0]
    if "\n" in text:
        lines = text.split("\n")
        return "\n".join(lines[:-1] + [line])
    sents = split_sentences(text)
    return " ".join(sents[:-1] + [line]) if len(sents) > 1 else f"{text} {line}"


# ------------------------------------------------------------------------------------ ignore / weak
def _ignore(ph, facts, plan, lc, rng) -> str:
    table = ph.ignore_instruction
    alt = (table.get(facts.modality) or {}).get(plan.itype) if facts.modality == "audio" else None
    alt = alt or table[plan.itype]
    if alt not in load_taxonomy().modalities[facts.modality]:
        alt = "detail"
    force = plan.excluded_id if plan.itype == "instance" else None
    return Writer(ph, facts, rng).caption(plan, lc, itype=alt, force_first=force)


def _slips(facts: Facts, plan: Plan, pid: str | None) -> list:
    """Small slips a weaker captioner makes, as edits of a grounding copy, most visible first for the type."""
    wm_order = {
        "appearance": ("size", "position"), "position": ("position", "size"), "action": ("action", "position"),
        "camera": ("camera",), "background": ("lighting",), "event": ("action", "position"),
    }
    kinds = wm_order.get(plan.itype, ("position", "size", "action"))
    if facts.modality == "audio":
        kinds = ("loudness", "pitch", "timing")
    return list(kinds) + [k for k in ("position", "size", "loudness", "pitch", "action") if k not in kinds]


def _apply_slip(g: dict, kind: str, pid: str | None, wm: dict, modality: str) -> bool:
    if kind == "camera":
        cam = g.get("camera") or {}
        flip = {"pan left": "pan right", "pan right": "pan left", "tilt up": "tilt down", "tilt down": "tilt up",
                "zoom in": "zoom out", "zoom out": "zoom in"}
        if cam.get("motion") in flip:
            cam["motion"] = flip[cam["motion"]]
            return True
        return False
    if kind == "lighting":
        return False
    items = g.get("sounds") if modality == "audio" else g.get("objects")
    for it in items or []:
        if it.get("id") != pid:
            continue
        if kind == "size" and it.get("size") in wm["size_swap"] and it.get("size") != wm["size_swap"][it["size"]]:
            it["size"] = wm["size_swap"][it["size"]]
            return True
        if kind == "loudness" and it.get("loudness") in wm["loudness_swap"]:
            it["loudness"] = wm["loudness_swap"][it["loudness"]]
            return True
        if kind == "pitch" and it.get("pitch") in wm["pitch_swap"]:
            it["pitch"] = wm["pitch_swap"][it["pitch"]]
            return True
        if kind == "position" and it.get("position") in POSITIONS:
            old = it["position"]
            it["position"] = POSITIONS[(POSITIONS.index(old) + 4) % 9]  # a clearly different cell
            if it.get("end_position") == old:
                it["end_position"] = it["position"]
            it.pop("bbox", None)
            return True
        if kind == "timing" and modality == "audio":
            dur = g.get("duration_s") or 4.0
            length = float(it.get("end", 0.0)) - float(it.get("start", 0.0))
            start = float(it.get("start", 0.0))
            new = dur * 0.75 if start < dur * 0.5 else dur * 0.05  # early <-> late
            it["start"], it["end"] = round(new, 2), round(min(dur, new + length), 2)
            g["events"] = []  # re-derived from the moved sound
            return True
        if kind == "action" and it.get("action") in wm.get("action_swap", {}):
            it["action"] = wm["action_swap"][it["action"]]
            return True
    return False


def _weak(ph, facts, plan, lc, rng) -> str:
    """Fewer facts, no attributes, vaguer words and one small slip that the caption really states.

    The slip is checked against the true grounding with the check stage's fact check, so the rejected
    caption is worse in exactly this recorded way (not merely shorter)."""
    from acd.checks.factcheck import problems

    wm = ph.weak_model
    pid = _primary_id(facts, plan)
    text = None
    for kind in _slips(facts, plan, pid):
        g = json.loads(json.dumps(facts.g))
        for it in (g.get("sounds") if facts.modality == "audio" else g.get("objects")) or []:
            it.pop("attributes", None)
            it.pop("pattern", None)
        if not _apply_slip(g, kind, pid, wm, facts.modality):
            continue
        weak = Facts(facts.modality, g, facts.lex)
        for lite in (True, False):  # fewer facts when the length allows it; a weak model still obeys length
            text = Writer(ph, weak, random.Random(rng.random())).caption(plan, lc, lite=lite)
            for a, b in wm["vague_words"].items():
                text = text.replace(a, b)
            if problems(text, facts.modality, facts.g, None) and satisfies(text, lc):
                return text
    # no slip shows in a lite caption of this type (e.g. a background caption): state one that does
    return _append_hallucination(ph, facts, text or Writer(ph, facts, rng).caption(plan, lc, lite=True), rng)


def hallucinated_terms(text: str, grounding: dict[str, Any] | str, ph: Phrasing) -> list[str]:
    """Hallucination-vocabulary terms that `text` states but the grounding does not contain."""
    g = json.loads(grounding) if isinstance(grounding, str) else grounding
    present = set(re.findall(r"[a-z]+", json.dumps(g).lower()))
    low = text.lower()
    hv = ph.hallucination
    terms = list(hv["colours"]) + list(hv["objects"]) + list(hv["sounds"]) + list(hv["backgrounds"])
    terms += [m.split()[0] for m in hv["camera"]]
    out = []
    for t in terms:
        words = set(re.findall(r"[a-z]+", t.lower()))
        if words & present:
            continue
        if re.search(r"\b" + re.escape(t.lower()), low):
            out.append(t)
    return out
