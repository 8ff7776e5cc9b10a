"""The fact check: every colour, object, count, position, motion and sound a caption states, held against
the media's grounding (acd/grounding.py). Only for media whose source knows the truth.

A caption fails when it names
  - a colour, object or sound the grounding does not have anywhere (a hallucination);
  - a colour or size bound to an object ("the blue ball", "the ball is blue") that this object lacks;
  - a count ("two stars", "three objects") that differs from the grounding's;
  - a grid position for the one object of a clause that the object does not occupy (start or end);
  - a motion of an object ("the ball bounces") it does not make, or a camera move the camera does not make;
  - a loudness or pitch bound to a sound it does not have;
  - a backdrop whose defining ground or decoration is out of view ("a dense forest" seen top-down as grass;
    acd/checks/setting.py).
Vocabularies come from the synthetic source's vocabulary, the grounded backend's hallucination lists and
schemas/checks.yaml `facts`; reason code `fact_chosen`.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache

from acd.checks.vocab import fact_vocab as _vocab, word_rx as _obj_rx

FACT = "fact_chosen"
_WORDS = re.compile(r"[a-z]+")
_CLAUSE = re.compile(r"[.;!?\n]+|,\s+(?:and|while|but|as)\s+")
_TOKS = re.compile(r"[a-z]+(?:-[a-z]+)*")




@lru_cache(maxsize=1)
def _patterns() -> dict[str, re.Pattern]:
    v = _vocab()
    nouns = set(v["objects"]) | set(v["plural_of"].values())
    col = "|".join(sorted(v["colours"], key=len, reverse=True))
    size = "|".join(sorted(v["sizes"], key=len, reverse=True))
    noun = "|".join(sorted(map(re.escape, nouns), key=len, reverse=True))
    nums = "|".join(w for w in v["numbers"] if w != "zero")
    return {
        "noun": _obj_rx(nouns),
        "colour": _obj_rx(v["colours"]),
        # "the small blue ball", "a blue ball": a colour right before (maybe after a size) its noun
        "col_noun": re.compile(rf"\b({col})\s+(?:(?:{size})\s+)?({noun})\b"),
        "size_noun": re.compile(rf"\b({size})\s+(?:({col})\s+)?({noun})\b"),
        # "the ball is blue", "the ball is small and blue", "the ball is painted a solid blue"
        "noun_is_col": re.compile(rf"\b({noun})\s+(?:is|looks|appears)\s+(?:(?:{size})\s+and\s+|painted\s+a\s+solid\s+)?({col})\b"),
        "count": re.compile(rf"\b({nums})\s+(?:(?:{size}|{col}|distinct|separate|different)\s+)*({noun}|objects|things|shapes|sounds)\b"),
        "sound": _obj_rx(v["sounds"]),
    }


def parsed(grounding: str | dict | None) -> dict | None:
    """A grounding as a dict: a JSON string is parsed once per item (the cache below), a dict passes through.
    The one parser every check reads a grounding with."""
    if isinstance(grounding, str):
        return _grounding(grounding)[0] if grounding else None
    return grounding or None


@lru_cache(maxsize=8192)
def _grounding(raw: str) -> tuple[dict, frozenset]:
    """A grounding JSON parsed once, with every lower-case word in it (a lot checks ~10 pairs per item)."""
    g = json.loads(raw)
    words = set(_WORDS.findall(raw.lower()))
    # a decoration's wordings are true of what is drawn ("green blades of grass": grass is drawn green), so
    # their words count as present even when the backdrop's colour, read off the frame, is another
    decor_words = _vocab()["decor_words"]
    for d in (g.get("scene") or {}).get("decorations") or []:
        words |= decor_words.get(d, set())
    return g, frozenset(words)


@lru_cache(maxsize=4096)
def _grounding_nouns(cats: tuple[str, ...]) -> frozenset:
    from acd.lexicon import plural

    return frozenset(cats) | frozenset(plural(c) for c in cats)


def _norm_noun(w: str) -> str:
    s = _vocab()["singular_of"].get(w)
    if s:
        return s
    from acd.lexicon import inflect_engine

    sing = inflect_engine().singular_noun(w) if w.endswith("s") else False
    return sing or w


def problems(text: str, modality: str, grounding: dict | str | None, instruction: str | None = None) -> list[str]:
    """Every statement of `text` that the grounding contradicts; [] when none (or no grounding).

    Words of the instruction count as given ("from the viewpoint of a bird" may mention a bird)."""
    if not text or not grounding:
        return []
    g, present = _grounding(grounding if isinstance(grounding, str) else json.dumps(grounding, sort_keys=True))
    low = " ".join(text.lower().split("\n"))
    if instruction:
        present = present | set(_WORDS.findall(instruction.lower()))
    out: list[str] = []
    if modality == "audio":
        out += _sounds(low, g, present)
        return out
    objs = g.get("objects") or []
    cats: dict[str, list[dict]] = {}
    for o in objs:
        cats.setdefault(o.get("category"), []).append(o)
    v = _vocab()
    colours, sizes, nums = v["colours"], v["sizes"], v["numbers"]
    nouns = v["nouns"] | _grounding_nouns(tuple(sorted(c for c in cats if c)))  # also this item's own categories
    # Token scans (set lookups, no big regex alternations: the check stage reads every pair of a build).
    for clause in _CLAUSE.split(low):
        toks = _TOKS.findall(clause)
        if not toks:
            continue
        named: set[str] = set()
        bound_col: set[str] = set()
        n = len(toks)
        for i, t in enumerate(toks):
            if t in colours and t not in present:
                out.append(f"colour: {t!r} is nowhere in the media")
            if t in nouns:
                base = _norm_noun(t)
                if t not in present and base not in present and v["plural_of"].get(t, t) not in present:
                    out.append(f"object: {t!r} is not in the media")
                if base in cats:
                    named.add(base)
            elif t in colours or t in sizes:  # "blue ball", "small blue ball", "small ball"
                j, c, sz = i, None, None
                while j < n and (toks[j] in colours or toks[j] in sizes):
                    if toks[j] in colours:
                        c = toks[j]
                    else:
                        sz = v["size_norm"].get(toks[j], toks[j])
                    j += 1
                if j < n and toks[j] in nouns and (i == 0 or (toks[i - 1] not in colours and toks[i - 1] not in sizes)):
                    base = _norm_noun(toks[j])
                    cand = cats.get(base)
                    if cand:
                        if c and all(o.get("colour") != c for o in cand):
                            out.append(f"colour: '{c} {toks[j]}' but the {base} is {cand[0].get('colour')}")
                        elif c:
                            bound_col.add(c)
                        pool = [o for o in cand if not c or o.get("colour") == c]
                        if sz in ("small", "medium", "large") and pool and all(o.get("size") != sz for o in pool):
                            out.append(f"size: '{sz} {toks[j]}' but it is {pool[0].get('size')}")
            if t in ("is", "looks", "appears") and i > 0 and toks[i - 1] in nouns:
                base = _norm_noun(toks[i - 1])
                rest = toks[i + 1:i + 5]
                if rest[:1] and rest[0] in sizes and rest[1:2] == ["and"]:
                    rest = rest[2:]
                elif rest[:3] == ["painted", "a", "solid"]:
                    rest = rest[3:]
                if rest and rest[0] in colours and base in cats and all(o.get("colour") != rest[0] for o in cats[base]):
                    out.append(f"colour: 'the {toks[i - 1]} {t} {rest[0]}' but it is {cats[base][0].get('colour')}")
            if t in nums and t != "zero":
                j, c = i + 1, None
                while j < n and (toks[j] in colours or toks[j] in sizes or toks[j] in ("distinct", "separate", "different")):
                    c = toks[j] if toks[j] in colours else c
                    j += 1
                if j < n:
                    noun = toks[j]
                    if noun in ("objects", "things", "shapes"):
                        real = len(objs)
                    elif noun in nouns and _norm_noun(noun) in cats:
                        real = sum(1 for o in cats[_norm_noun(noun)] if not c or o.get("colour") == c)
                    else:
                        continue
                    if nums[t] != real:
                        out.append(f"count: '{t} {noun}' but there are {real}")
        # this clause's one object: its place and its motion
        if len(named) != 1:
            continue
        cat = next(iter(named))
        cands = [o for o in cats[cat] if not bound_col or o.get("colour") in bound_col] or cats[cat]
        if any(w in clause for w in (" relative to ", " to the left of ", " to the right of ", " above ", " below ")):
            continue  # a relation between places, not this object's own place
        for m in v["pos_rx"].finditer(clause):
            pos = v["positions"][m.group(1)]
            if all(pos not in (o.get("position"), o.get("end_position")) for o in cands):
                out.append(f"position: the {cat} is not {m.group(1)!r}")
        for m in v["action_rx"].finditer(clause):
            if all(o.get("action") != m.group(1) for o in cands):
                out.append(f"motion: the {cat} does not {m.group(1)!r}")
    cam = (g.get("camera") or {}).get("motion")
    v = _vocab()
    if modality == "video" and cam:
        for motion, crx in v["camera"].items():
            if motion != cam and crx.search(low):
                out.append(f"camera: the camera does not {motion!r} ({cam})")
    # a backdrop named while the frames do not show what makes it one (acd/checks/setting.py)
    from acd.checks.setting import problems as setting_problems

    out += setting_problems(text, g)
    if modality == "video":
        # where a moving or leaving object is, and when (acd/checks/motion.py)
        from acd.checks.motion import problems as motion_problems

        out += motion_problems(text, g)
    return out


def _sounds(low: str, g: dict, present: set[str]) -> list[str]:
    v = _vocab()
    out = []
    for phrase in v["audio_backgrounds"]:  # "a soft, rain-like hiss" is the background, not a soft sound
        low = low.replace(phrase, " ")
    sounds = g.get("sounds") or []
    by_src: dict[str, list[dict]] = {}
    for s in sounds:
        src = s.get("source") or ""
        by_src.setdefault(src, []).append(s)
        name = v["sound_names"].get(src)
        if name:
            by_src.setdefault(name, []).append(s)
    for m in _patterns()["sound"].finditer(low):
        w = m.group(1)
        ws = set(w.split())
        if not (ws <= present) and not any(w in k or k in w for k in by_src):
            out.append(f"sound: {w!r} is not in the audio")
    # loudness / pitch bound to a sound: in a clause that names exactly one sound, its loudness and pitch
    inv_pitch: dict[str, set] = {}
    for k, p in v["pitch"].items():
        inv_pitch.setdefault(p, set()).add(k)
    srcs = sorted(by_src, key=len, reverse=True)
    if srcs:
        src_rx = re.compile(r"\b(" + "|".join(map(re.escape, srcs)) + r")\b")
        for clause in _CLAUSE.split(low):
            named = {m.group(1) for m in src_rx.finditer(clause)}
            named = {n for n in named if not any(n != o and n in o for o in named)}  # "beeps" in "series of beeps"
            if len(named) != 1:
                continue
            src = next(iter(named))
            cands = by_src[src]
            for word in v["loud_rx"].findall(clause):
                loud = v["loudness"].get(word, word)
                if all(s.get("loudness") != loud for s in cands):
                    out.append(f"sound: the {src} is not {loud} ({word!r})")
            for pitch in re.findall(r"\b([a-z]+-pitched)\b", clause):
                if all(s.get("pitch") not in inv_pitch.get(pitch, ()) for s in cands):
                    out.append(f"sound: the {src} is not {pitch}")
            # when it starts: "near the start", "towards the end" (the writer's buckets of the clip)
            from acd.lexicon import when_bucket

            dur = g.get("duration_s") or max([x.get("end", 0.0) for x in sounds] + [1.0])
            for phrase, bucket in v["when_audio"].items():
                if phrase in clause and " stops" not in clause and " fades" not in clause and " ends" not in clause:
                    if all(when_bucket(x.get("start") or 0.0, dur) != bucket for x in cands):
                        out.append(f"sound: the {src} does not start {phrase!r}")
    n = len(sounds)
    nums = v["numbers"]
    for m in re.finditer(r"\b(" + "|".join(w for w in nums if w != "zero") + r")\s+(?:distinct\s+)?sounds\b", low):
        if nums[m.group(1)] != n:
            out.append(f"count: {m.group(0)!r} but there are {n}")
    return out
