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
from acd.grounded.facts import Facts, plural
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
        text = _ignore(ph, facts, plan, lc, rng, chosen)
    elif strategy in ("weak_model", "length_violation"):  # length_violation without a constraint: weak
        text = _weak(ph, facts, plan, lc, rng, chosen)
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
    """Values none of whose words is in the grounding, nor shares a stem with one of its words ("clapping"
    beside a clap is no hallucination: the fact check and a reader take it for the clap)."""
    stems = {w[:4] for w in present if len(w) >= 4}
    long = [w for w in present if len(w) >= 4]

    def near(w: str) -> bool:  # "doorbell" beside a bell is read as the bell too
        return w in present or (len(w) >= 4 and w[:4] in stems) or any(p in w for p in long)

    return [v for v in values if not any(near(w) for w in re.findall(r"[a-z]+", v.lower()))]


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
def _named_instruction(facts: Facts, plan: Plan) -> str:
    """The things the plan resolved from the instruction, as the checks read an instruction (the excluded one
    first): reject() is not given the instruction text, and the checks only need what it names."""
    ids = ([plan.excluded_id] if plan.excluded_id else []) + [i for i in plan.target_ids if i != plan.excluded_id]
    return " ".join(facts.by_id[i]["label"] for i in ids if i in facts.by_id)


def _worse(facts: Facts, plan: Plan, lc, strategy: str, chosen: str, text: str) -> bool:
    """The check stage's own verdict (acd/checks/rejected.py): is `text` worse than `chosen` in this way?"""
    from acd.checks.rejected import not_worse

    return not not_worse(_named_instruction(facts, plan), chosen, text, modality=facts.modality,
                         instruction_type=plan.itype, rejection_strategy=strategy, constraint=lc, grounding=facts.g)


def _stripped(facts: Facts, objects: tuple = (), scene: tuple = (), camera: bool = False,
              sounds: tuple = ()) -> Facts:
    """The same media with some facts left out (never changed): a caption of it says less, nothing false."""
    g = json.loads(json.dumps(facts.g))
    for o in g.get("objects") or []:
        for k in objects:
            o.pop(k, None)
    for snd in g.get("sounds") or []:
        for k in sounds:
            snd.pop(k, None)
    for k in scene:
        (g.get("scene") or {}).pop(k, None)
    if camera:
        g.pop("camera", None)
    return Facts(facts.modality, g, facts.lex)


def _setting_only(ph, facts, plan, lc, rng) -> str:
    """A caption of the setting alone (backdrop, light, mood, length), naming none of the media's things."""
    if facts.modality != "audio":
        # a decoration that shares a word with an object ("a row of pine trees" beside a tree) would read
        # as naming it: such decorations are left out
        cats = {w for o in facts.objs for w in (o["cat"].lower(), plural(o["cat"].lower()))}
        g = json.loads(json.dumps(facts.g))
        scene = g.get("scene") or {}
        scene["decorations"] = [d for d in scene.get("decorations") or []
                                if not cats & set(re.findall(r"[a-z]+", d.lower()))]
        bare = Facts(facts.modality, g, facts.lex)
        return Writer(ph, bare, rng).caption(Plan(itype="background"), lc, itype="background")
    w = Writer(ph, facts, rng)
    from acd.grounded.compose import _target

    groups = ["audio_background", "audio_mood", "audio_duration"]
    names = {n for snd in facts.sounds for n in re.findall(r"[a-z]+", snd["src"].lower())}
    if names & {x for p in facts.scene.get("abg_opts") or [] for x in re.findall(r"[a-z]+", p.lower())}:
        groups.remove("audio_background")  # "a low hum" beside a hum sound would name that sound
    units = [x for x in (w.u(gr) for gr in groups) if x]
    if not units:
        return ""
    target = _target(lc, len(units), units)
    return w._fit(units, 1, target) or w._fit(units, 1, target, force=True)


_LOOKS = ("colour", "size", "attributes", "pattern")
_PLACES = ("position", "end_position", "bbox")


def _ignore_candidates(ph, facts, plan, lc, rng, reqs: list[str]):
    """Captions that do not do what the instruction asks, by what its type's contract asks (most natural
    first). Each is true: another type's caption, or one written from the media less the asked-for facts."""
    table = ph.ignore_instruction
    alt = (table.get(facts.modality) or {}).get(plan.itype) if facts.modality == "audio" else None
    alt = alt or table[plan.itype]
    if alt not in load_taxonomy().modalities[facts.modality]:
        alt = "detail"
    w = lambda f: Writer(ph, f, random.Random(rng.random()))  # noqa: E731
    objs = facts.objs if facts.modality != "audio" else []
    if "excludes_excluded" in reqs and plan.excluded_id:  # the excluded object, named first (other draws
        for _ in range(3):                                    # when one misses the length)
            yield lambda: w(facts).caption(plan, lc, itype=alt, force_first=plan.excluded_id)
        return
    if "looks_named" in reqs:  # where things are, not how they look
        yield lambda: w(_stripped(facts, objects=_LOOKS)).caption(plan, lc, itype=alt)
    if "places_named" in reqs:  # how things look, not where they are
        yield lambda: w(_stripped(facts, objects=_PLACES)).caption(plan, lc, itype=alt)
    if "camera_motion" in reqs:
        yield lambda: w(_stripped(facts, camera=True)).caption(plan, lc, itype=alt)
    if "background_named" in reqs:
        yield lambda: w(_stripped(facts, scene=("background", "decorations", "background_colour"))).caption(
            plan, lc, itype=alt)
    if "names_every" in reqs and len(objs) >= 2:  # one object's looks, not the whole scene
        one = Plan(itype="appearance", target_ids=[objs[0]["id"]])
        yield lambda: w(facts).caption(one, lc)
    if {"names_one", "names_every"} & set(reqs):  # only the setting, none of the things asked about
        yield lambda: _setting_only(ph, facts, plan, lc, rng)
    yield lambda: w(facts).caption(plan, lc, itype=alt)  # another type's caption (event: a brief one)
    if "background_named" not in reqs:
        yield lambda: _setting_only(ph, facts, plan, lc, rng)


def _ignore(ph, facts, plan, lc, rng, chosen) -> str:
    """A fluent, true caption that does not do what the instruction asks, in a way the coverage check sees
    (blind readers found "brief" rejections that were detail captions as long as the chosen, with one more
    true detail: not worse). The first candidate the check calls worse and that keeps the length wins."""
    from acd.checks.coverage import requirements

    reqs = requirements(plan.itype, facts.modality)
    first_worse = last = None
    for make in _ignore_candidates(ph, facts, plan, lc, rng, reqs):
        text = make()
        if not text or text.strip() == chosen.strip():
            continue
        last = text
        if _worse(facts, plan, lc, "ignore_instruction", chosen, text):
            if satisfies(text, lc):
                return text
            first_worse = first_worse or text
    return first_worse or last or Writer(ph, facts, rng).caption(plan, lc, itype="detail")


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


def _weak_facts(facts: Facts, level: int, pid: str | None) -> dict:
    """A grounding copy as a weaker captioner perceives it: no attributes or sound patterns; at level 2 also
    no decorations, backdrop colour, lighting or mood, and no sizes or sound qualities but the primary thing's
    (whose slip is the caption's one false fact); at level 3 also no colours."""
    g = json.loads(json.dumps(facts.g))
    for it in (g.get("sounds") if facts.modality == "audio" else g.get("objects")) or []:
        it.pop("attributes", None)
        it.pop("pattern", None)
        if level >= 2 and it.get("id") != pid:
            for k in ("size", "pitch", "loudness"):
                it.pop(k, None)
        if level >= 3:  # no colours at all: what a short, tight-length chosen caption may still say
            it.pop("colour", None)
    if level >= 2:
        for k in ("decorations", "background_colour", "lighting", "mood"):
            (g.get("scene") or {}).pop(k, None)
    return g


def _weak(ph, facts, plan, lc, rng, chosen: str = "") -> str:
    """Fewer facts, no attributes, vaguer words and one small slip that the caption really states.

    The slip is checked against the true grounding with the check stage's fact check, and the facts it states
    are counted with the check's own count (acd/checks/rejected.stated_facts): blind readers found weak
    rejections as long as the chosen that added a true detail it lacked. The first draft with a slip, fewer
    facts than the chosen, no true fact the chosen lacks unless it is shorter, and the pair's length wins;
    else the best draft by those tests in that order."""
    from acd.checks.factcheck import problems
    from acd.checks.rejected import stated_facts

    wm = ph.weak_model
    pid = _primary_id(facts, plan)
    have = stated_facts(chosen, facts.modality, facts.g) if chosen else frozenset()
    n_chosen = count_words(chosen)
    best, best_rank, text = None, None, None
    for level in (2, 3, 1):
        for kind in _slips(facts, plan, pid):
            g = _weak_facts(facts, level, pid)
            if not _apply_slip(g, kind, pid, wm, facts.modality):
                continue
            weak = Facts(facts.modality, g, facts.lex)
            drafts = []
            for lite in (True, False):  # fewer facts when the length allows it; a weak model still obeys length
                text = Writer(ph, weak, random.Random(rng.random())).caption(plan, lc, lite=lite)
                for a, b in wm["vague_words"].items():
                    text = text.replace(a, b)
                drafts.append(text)
                if lite:  # a lite caption of a type that places nothing: its last sentence says the slip
                    line = _slip_line(ph, weak, pid, rng)
                    if line:
                        drafts += [_swap_last(text, line), line]  # or the slip alone (under a tight chosen)
            for text in drafts:
                if not problems(text, facts.modality, facts.g, None) or text.strip() == chosen.strip():
                    continue
                said = stated_facts(text, facts.modality, facts.g)
                fewer = len(said) < len(have) if chosen else True
                no_add = not (said - have) or count_words(text) < n_chosen if chosen else True
                rank = (fewer and no_add, satisfies(text, lc), fewer, no_add)
                if all(rank):
                    return text
                if best_rank is None or rank > best_rank:
                    best, best_rank = text, rank
    if best is not None:
        return best
    # no slip shows in a lite caption of this type (e.g. a background caption): state one that does
    return _append_hallucination(ph, facts, text or Writer(ph, facts, rng).caption(plan, lc, lite=True), rng)


def _slip_line(ph: Phrasing, weak: Facts, pid: str | None, rng: random.Random) -> str | None:
    """One short sentence about the primary thing as the weak grounding has it (its slip included)."""
    thing = weak.by_id.get(pid) if pid else None
    if not thing:
        return None
    got = ph.pick("sound_short" if weak.modality == "audio" else "obj_short", weak.ctx(thing), rng)
    return got[0] if got else None


def _swap_last(text: str, line: str) -> str:
    """`text` with its last sentence (or poem line) replaced by `line`; appended to a one-sentence text."""
    if "\n" in text:
        return "\n".join(text.split("\n")[:-1] + [line])
    sents = split_sentences(text)
    return " ".join(sents[:-1] + [line]) if len(sents) > 1 else f"{text} {line}"


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
