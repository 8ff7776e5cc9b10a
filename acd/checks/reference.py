"""The reference check: a sentence that opens with "It"/"Its" must point at one thing, the thing named
last in the sentence before. Reason `reference_chosen`; `problems()` says what and where.

Blind readers stopped at "Its position is in the upper left corner" right after a sentence about the tree,
when the car is in the upper left corner. So an "It" sentence (a poem's line) fails
  - when the sentence before names two or more things: "It" is ambiguous;
  - with a grounding (image/video): when its facts (a grid place, a colour, a size) fit another object and not
    the one named before, or fit one object when the sentence before names none.
An "It" sentence that names nothing new carries its referent on to the next "It" sentence. Expletive and
scene "it" ("It seems hushed.", "It is easy to see ...", "It all takes place in a forest.") is exempt;
the opener and the exemptions are data (schemas/checks.yaml `reference`). Without a grounding the things
are the fact check's object and sound words, and only the ambiguity rule applies.
"""
from __future__ import annotations

import re
from functools import lru_cache

from acd.checks.config import load_checks_spec
from acd.checks.mentions import by_id, object_mentions, place_mentions, units

REFERENCE = "reference_chosen"
_TOK = re.compile(r"[a-z]+(?:-[a-z]+)*")


@lru_cache(maxsize=1)
def _spec() -> dict:
    r = load_checks_spec()["reference"]
    return {
        "opener": re.compile(r["opener"]),
        "expletive": re.compile("|".join(f"(?:{p})" for p in r["expletive"])),
    }


@lru_cache(maxsize=1)
def _words() -> dict:
    from acd.checks.vocab import fact_vocab as _vocab

    v = _vocab()
    return {"nouns": v["nouns"], "singular_of": v["singular_of"], "sounds": v["sounds"],
            "sound_names": v["sound_names"], "colours": v["colours"], "size_norm": v["size_norm"],
            "sizes": v["sizes"]}


def _things(low: str, modality: str | None, g: dict | None) -> list[str]:
    """Keys of the things `low` names, in order of their (last) mention."""
    if g and modality in ("image", "video") and g.get("objects"):
        keys = []
        for mt in object_mentions(low, g):
            keys.append(",".join(sorted(mt.ids)))
        return keys
    w = _words()
    keys = []
    if modality == "audio" or g and g.get("sounds"):
        srcs = {s.get("source") for s in (g or {}).get("sounds") or [] if s.get("source")}
        names = set(w["sounds"]) | srcs | set(w["sound_names"].values())
        for m in re.finditer(r"\b(" + "|".join(sorted(map(re.escape, names), key=len, reverse=True)) + r")\b", low):
            name = m.group(1)
            keys.append(next((k for k, v in w["sound_names"].items() if v == name), name).rstrip("s"))
        if modality == "audio":
            return keys
    for t in _TOK.findall(low):
        if t in w["nouns"]:
            keys.append(w["singular_of"].get(t, t))
    return keys


def _fits(low: str, g: dict) -> set[str] | None:
    """The objects that every fact of an "It" sentence fits; None when it states no object fact (or names
    another object itself, or relates places: then its facts need not be the referent's)."""
    if object_mentions(low, g) or re.search(r"\b(?:of it|than it|relative to|beneath it|above it|below it)\b", low):
        return None
    objs = by_id(g)
    back = set(_TOK.findall(str((g.get("scene") or {}).get("background_colour", ""))))
    w = _words()
    fits = set(objs)
    stated = False
    for p in place_mentions(low):
        fits &= {i for i, o in objs.items() if p.grid in (o.get("position"), o.get("end_position"))}
        stated = True
    for t in _TOK.findall(low):
        if t in w["colours"] and t not in back:
            fits &= {i for i, o in objs.items() if o.get("colour") == t}
            stated = True
        elif t in w["sizes"]:
            sz = w["size_norm"].get(t, t)
            if sz in ("small", "medium", "large"):
                fits &= {i for i, o in objs.items() if o.get("size") == sz}
                stated = True
    return fits if stated else None


def _label(key: str, g: dict | None) -> str:
    if g and g.get("objects"):
        objs = by_id(g)
        return " or ".join(f"the {objs[i].get('colour', '')} {objs[i]['category']}" for i in key.split(",") if i in objs)
    return f"the {key}"


def problems(text: str, modality: str | None = None, grounding: dict | str | None = None) -> list[str]:
    """Every "It"/"Its" opener that does not point at one thing named just before; [] when none."""
    if not text or not text.strip():
        return []
    from acd.checks.style import _parse

    g = _parse(grounding)
    sp = _spec()
    out: list[str] = []
    prev: list[str] = []
    for i, unit in enumerate(units(text)):
        low = unit.lower().strip()
        named = _things(low, modality, g)
        opens = i > 0 and sp["opener"].match(low) and not sp["expletive"].match(low)
        if opens:
            distinct = list(dict.fromkeys(prev))
            excerpt = unit[:60]
            if len(distinct) >= 2:
                out.append(f"ambiguous: {excerpt!r} follows a sentence naming "
                           f"{', '.join(_label(k, g) for k in distinct)}")
            elif g and modality in ("image", "video") and g.get("objects"):
                fits = _fits(low, g)
                if fits:
                    if not distinct:
                        if len(fits) == 1:
                            out.append(f"no antecedent: {excerpt!r} is about {_label(next(iter(fits)), g)}, "
                                       f"but the sentence before names no object")
                    elif not fits & set(distinct[0].split(",")):
                        out.append(f"wrong referent: {excerpt!r} fits {_label(','.join(sorted(fits)), g)}, "
                                   f"not {_label(distinct[0], g)} named before it")
            if not named:
                continue  # "It ..." naming nothing new: the next "It" still points where this one did
        prev = named
    return out
