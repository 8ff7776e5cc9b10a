"""The coverage check: does a caption state what its instruction type obliges it to state?

The obligations are data (schemas/contracts.yaml): per instruction type a list of requirements such as
"every thing the instruction names is mentioned" or "the start and the stop of every sound". With a grounding
(synthetic media) every requirement is read against it; without one (real media, a model backend) only the
requirements the instruction itself can decide apply: the things it names (from the checks' object and sound
vocabulary), the thing an instance instruction excludes, and a count it asks for.

Reason code `coverage_chosen`. `problems()` returns one "requirement: what is missing" string per miss, for
reports and tests. The grounded writer calls the same function on its drafts (acd/grounded/compose.py), so the
writer and the check cannot disagree about what a type must say.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from acd.checks.factcheck import parsed
from acd.checks.length import is_poem_layout, split_sentences

COVERAGE = "coverage_chosen"
_PLACE = re.compile(r"\b(?:left|right|top|bottom|cent(?:er|re|ral)|middle|corner|edge|above|below|beneath|beside|next to|"
                    r"upper|lower|high|low|side|near|across)\b", re.IGNORECASE)
_NUMBER = re.compile(r"\b(?:\d+|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|single|pair|both|"
                     r"no|none)\b", re.IGNORECASE)
_PRONOUN_LEAD = re.compile(r"^\s*(?:it|its|it's|they|their)\b", re.IGNORECASE)


@lru_cache(maxsize=1)
def contracts() -> dict[str, Any]:
    import yaml

    from acd.paths import SCHEMAS_DIR

    data = yaml.safe_load((SCHEMAS_DIR / "contracts.yaml").read_text())
    known = set(data["requirements"])
    for t, spec in data["types"].items():
        for req in list(spec["requires"]) + [r for rs in (spec.get("by_modality") or {}).values() for r in rs]:
            if req not in known:
                raise ValueError(f"schemas/contracts.yaml: type {t!r} requires unknown {req!r}")
    return data


def requirements(instruction_type: str | None, modality: str | None) -> list[str]:
    """The requirement names a caption of this type (and modality) must meet."""
    spec = contracts()["types"].get(instruction_type or "")
    if not spec:
        return []
    return list((spec.get("by_modality") or {}).get(modality or "", spec["requires"]))


@lru_cache(maxsize=1)
def _words() -> dict[str, Any]:
    w = contracts()["words"]

    def rx(parts: list[str]) -> re.Pattern:
        return re.compile(r"\b(?:" + "|".join(parts) + ")", re.IGNORECASE)

    return {
        "moment": rx(w["moment"]),
        "motion": {k: rx(v) for k, v in w["motion"].items()},
        "any_motion": rx([p for v in w["motion"].values() for p in v]),
        "event": {k: rx(v) for k, v in w["event"].items()},
        "sound_start": rx(w["sound_start"]),
        "sound_stop": rx(w["sound_stop"]),
        "camera_still": rx(w["camera_still"]),
        "count_question": rx(w["count_question"]),
    }


@lru_cache(maxsize=1)
def _vocab() -> dict[str, Any]:
    """Nouns the check can recognise without a grounding: the fact check's objects and sounds."""
    from acd.checks.vocab import fact_vocab

    v = fact_vocab()
    return {"objects": sorted(v["objects"]), "sounds": sorted(v["sounds"]), "plural_of": v["plural_of"],
            "camera": v["camera"]}


@lru_cache(maxsize=4096)
def _noun_rx(noun: str) -> re.Pattern:
    """A noun or its plural, as a whole word ('series of beeps' is found by 'beeps' or 'beep')."""
    plural = _vocab()["plural_of"].get(noun) or (noun + "s")
    forms = {noun, plural}
    if noun.endswith("s"):
        forms.add(noun[:-1])
    return re.compile(r"\b(?:" + "|".join(sorted(map(re.escape, forms), key=len, reverse=True)) + r")\b", re.IGNORECASE)


def _sentences(text: str) -> list[str]:
    if is_poem_layout(text):
        return [ln for ln in text.splitlines() if ln.strip()]
    return split_sentences(text) or [text]


class _Thing:
    """One object or sound of the grounding, with the facts the requirements ask about."""

    def __init__(self, raw: dict[str, Any], kind: str):
        self.raw, self.kind = raw, kind
        self.id = raw.get("id")
        noun = (raw.get("category") if kind == "object" else raw.get("source")) or ""
        self.noun = noun.lower()
        self.rx = _noun_rx(self.noun) if self.noun else None

    def named_in(self, text: str) -> bool:
        return bool(self.rx and self.rx.search(text))

    @property
    def moving(self) -> bool:
        action = (self.raw.get("action") or "").lower()
        still = any(w in action for w in ("stays", "still", "static", "remains", "does not move", "stationary"))
        moved = self.raw.get("end_position") and self.raw.get("end_position") != self.raw.get("position")
        return bool(action and not still) or bool(moved)

    def features(self) -> list[str]:
        """Words that show a feature was said: an adjective ('shiny') or a part's noun ('tail')."""
        out = []
        for a in self.raw.get("attributes") or []:
            a = (a or "").lower().strip()
            if not a:
                continue
            word = a.split()[-1] if a.startswith("with ") else a
            if self.noun not in word:  # "heart-shaped" says nothing about a heart
                out.append(word)
        return out


def _things(modality: str, g: dict[str, Any]) -> list[_Thing]:
    if modality == "audio":
        return [_Thing(s, "sound") for s in g.get("sounds") or []]
    return [_Thing(o, "object") for o in g.get("objects") or []]


def _block(sents: list[str], thing: _Thing, others: list[_Thing]) -> list[str]:
    """The sentences about a thing: those naming it, and pronoun sentences that follow them."""
    out, on = [], False
    for s in sents:
        if thing.named_in(s):
            out.append(s)
            on = True
        elif on and _PRONOUN_LEAD.match(s) and not any(o.named_in(s) for o in others):
            out.append(s)
        else:
            on = False
    return out


def _named_in_instruction(instruction: str, things: list[_Thing]) -> list[_Thing]:
    """Things of the grounding the instruction names, in the order it names them."""
    hits = []
    for t in things:
        m = t.rx.search(instruction) if t.rx else None
        if m:
            hits.append((m.start(), t))
    return [t for _, t in sorted(hits, key=lambda h: h[0])]


def _vocab_named(instruction: str, modality: str | None) -> list[str]:
    """Without a grounding: vocabulary nouns the instruction names ('the cat', 'the siren')."""
    v = _vocab()
    pool = v["sounds"] if modality == "audio" else v["objects"]
    hits = []
    for noun in pool:
        m = re.search(r"\bthe\s+(?:[a-z-]+\s+){0,2}?" + _noun_rx(noun).pattern[2:], instruction, re.IGNORECASE)
        if m:
            hits.append((m.start(), noun))
    return [n for _, n in sorted(hits)]


def problems(text: str | None, modality: str | None, instruction_type: str | None, instruction: str | None,
             grounding: str | dict | None = None) -> list[str]:
    """What the caption leaves out of its type's contract (or says against an exclusion); [] when covered."""
    if not text or not text.strip():
        return []
    reqs = requirements(instruction_type, modality)
    if not reqs:
        return []
    instruction = instruction or ""
    g = parsed(grounding)
    if not g:
        return _problems_without_grounding(text, modality, instruction_type, instruction, reqs)
    modality = modality or "image"
    things = _things(modality, g)
    named = _named_in_instruction(instruction, things)
    excluded = named[0] if instruction_type == "instance" and named else None
    if excluded is not None:
        named = [t for t in named if t.noun != excluded.noun]
    sents = _sentences(text)
    out: list[str] = []
    w = _words()
    for req in reqs:
        if req == "names_named":
            out += [f"{req}: the {t.noun} is not mentioned" for t in named if not t.named_in(text)]
        elif req == "excludes_excluded":
            if excluded is not None and excluded.named_in(text):
                out.append(f"{req}: the excluded {excluded.noun} is mentioned")
        elif req == "counts_named":
            if w["count_question"].search(instruction) and not _NUMBER.search(text):
                out.append(f"{req}: the instruction asks for a count and no number is stated")
        elif req == "names_one":
            pool = [t for t in things if excluded is None or t.noun != excluded.noun]
            if pool and not any(t.named_in(text) for t in pool):
                out.append(f"{req}: no {'sound' if modality == 'audio' else 'object'} of the media is mentioned")
        elif req == "names_every":  # an instance caption names every thing but the one it must leave out
            missing = sorted({t.noun for t in things if not t.named_in(text)
                              and (excluded is None or t.noun != excluded.noun)})
            out += [f"{req}: the {n} is not mentioned" for n in missing]
        elif req == "places_named":
            for t in named or things[:1]:
                block = _block(sents, t, [o for o in things if o.noun != t.noun])
                placed = [s for s in block if _PLACE.search(s)]
                if not placed:
                    out.append(f"{req}: no place is stated for the {t.noun}")
                elif t.moving and not any(w["moment"].search(s) for s in placed):
                    out.append(f"{req}: the moving {t.noun} is placed without a moment")
        elif req == "looks_named":
            for t in named or things[:1]:
                block = " ".join(_block(sents, t, [o for o in things if o.noun != t.noun]))
                colour = (t.raw.get("colour") or "").lower()
                if colour and not re.search(r"\b" + re.escape(colour) + r"\b", block, re.IGNORECASE):
                    out.append(f"{req}: the {t.noun}'s colour ({colour}) is not stated")
                if t.raw.get("size") and not _says_size(block, t.raw["size"]) and not (
                        t.raw.get("action") in ("grows", "shrinks")):
                    out.append(f"{req}: the {t.noun}'s size is not stated")
                feats = t.features()
                if feats and not any(re.search(r"\b" + re.escape(f), block, re.IGNORECASE) for f in feats):
                    out.append(f"{req}: no feature of the {t.noun} is stated")
        elif req in ("moves_named", "moves_every"):
            pool = (named or [t for t in things if t.moving][:1]) if req == "moves_named" else things
            for t in pool:
                if not t.moving:
                    continue
                block = " ".join(_block(sents, t, [o for o in things if o.noun != t.noun]))
                verb = (t.raw.get("action") or "moves").split()[0].lower()
                rx = w["motion"].get(verb, w["any_motion"])
                if not (rx.search(block) or w["event"]["leave"].search(block)):
                    out.append(f"{req}: the {t.noun}'s motion ({t.raw.get('action') or 'moves'}) is not stated")
        elif req == "every_event":
            out += _event_problems(req, sents, things, g, modality)
        elif req in ("exits_every", "exits_named") and modality == "video":
            scope = {t.id for t in (named if req == "exits_named" else things)
                     if excluded is None or t.noun != excluded.noun}
            out += _event_problems(req, sents, things, g, modality, kinds=("leave",), ids=scope)
        elif req == "camera_motion":
            motion = ((g.get("camera") or {}).get("motion") or "static").lower()
            if motion == "static":
                ok = w["camera_still"].search(text)
            else:
                spec = _vocab()["camera"].get(motion)
                ok = (spec and spec.search(text)) or re.search(r"\b" + motion.split()[0], text, re.IGNORECASE)
            if not ok:
                out.append(f"{req}: the camera's motion ({motion}) is not stated")
        elif req == "background_named":
            bg = ((g.get("scene") or {}).get("background") or "").lower()
            if bg and not _says_background(text, bg) and not _says_shown_backdrop(text, g):
                out.append(f"{req}: the backdrop ({bg}) is not named")
    return out


def min_words(modality: str | None, instruction_type: str | None, grounding: str | dict | None,
              n_named: int = 1) -> int:
    """The fewest words a caption of this type needs to meet its contract for this media (0: no bound known).

    From schemas/contracts.yaml `min_words`; n_named is how many things the instruction names. The planner asks
    this for every length-controlled pair, so a grounding string's answer is remembered."""
    if isinstance(grounding, str):
        return _min_words_cached(modality, instruction_type, grounding, n_named)
    return _min_words(modality, instruction_type, grounding, n_named)


@lru_cache(maxsize=16384)
def _min_words_cached(modality: str | None, instruction_type: str | None, grounding: str, n_named: int) -> int:
    return _min_words(modality, instruction_type, parsed(grounding), n_named)


def _min_words(modality: str | None, instruction_type: str | None, g: dict | None, n_named: int) -> int:
    if not g:
        return 0
    costs = contracts()["min_words"]
    things = _things(modality or "image", g)
    movers = [t for t in things if t.moving]
    total = 0
    for req in requirements(instruction_type, modality):
        c = costs.get(req) or {}
        total += int(c.get("fixed", 0))
        if req in ("looks_named", "moves_named"):
            total += int(c.get("per", 0)) * n_named
        elif req == "places_named":
            total += int(c.get("per_moving" if movers else "per", 0)) * n_named
        elif req == "names_every":  # the thing an instance caption leaves out costs no words
            n_left_out = 1 if "excludes_excluded" in requirements(instruction_type, modality) else 0
            # a type may say each thing in a sentence of its own (a story, a view): more words per thing
            per = (contracts()["types"].get(instruction_type or "") or {}).get("min_words_per_thing", c.get("per", 0))
            total += int(per) * max(0, len({t.noun for t in things}) - n_left_out)
        elif req == "moves_every":
            total += int(c.get("per", 0)) * len(movers)
        elif req in ("exits_every", "exits_named") and modality == "video":
            leavers = {i for e in g.get("events") or [] if e.get("type") == "leave" for i in e.get("objects") or []}
            total += int(c.get("per_exit", 0)) * (min(len(leavers), n_named) if req == "exits_named" else len(leavers))
        elif req == "every_event":
            if modality == "audio":
                total += int(c.get("per_sound", 0)) * len(things)
            else:
                total += int(c.get("per_event", 0)) * len(g.get("events") or [])
    return total + int((contracts()["types"].get(instruction_type or "") or {}).get("min_words", 0))


def _says_size(text: str, size: str) -> bool:
    return bool(_size_rx(size).search(text))


@lru_cache(maxsize=16)
def _size_rx(size: str) -> re.Pattern:
    from acd.lexicon import lexicon

    alts = lexicon().get("size_alt", {}).get(size, [])
    words = {size, *alts, "tiny", "big", "little", "huge", "large", "small", "medium", "mid-sized", "medium-sized"}
    return re.compile(r"\b(?:" + "|".join(map(re.escape, words)) + r")\b", re.IGNORECASE)


@lru_cache(maxsize=64)
def _background_rx(bg: str) -> re.Pattern:
    from acd.lexicon import lexicon

    alts = lexicon().get("background_alt", {}).get(bg, [])
    heads = {bg.split()[-1], *(a.split()[-1] for a in alts)} | ({bg.split()[0]} if " " in bg else set())
    heads = {h for h in heads if len(h) >= 3}
    return re.compile(r"\b(?:" + "|".join(sorted(map(re.escape, heads))) + r")", re.IGNORECASE)


def _says_background(text: str, bg: str) -> bool:
    return bool(_background_rx(bg).search(text))


def _says_shown_backdrop(text: str, g: dict) -> bool:
    """A backdrop whose name the frames do not bear out (a top-down forest: grass, no tree; acd/checks/setting.py)
    is named by what is drawn: one of its decorations, in any of their wordings, or its colour."""
    from acd.checks.setting import name_shown
    from acd.checks.vocab import fact_vocab

    if name_shown(g):
        return False
    scene = g.get("scene") or {}
    stop = {"a", "an", "the", "of", "in", "with", "on", "and", "small", "few", "along", "far", "off"}
    # a decoration is named by its own nouns ("clouds", "sea"), not by its wordings' adjectives ("overhead",
    # "soft") or a colour, which any sentence about the light may carry
    words = {w for d in scene.get("decorations") or [] for w in re.findall(r"[a-z]+", d)}
    words = {w for w in words if w not in stop and len(w) > 2 and w not in fact_vocab()["colours"]}
    colour = (scene.get("background_colour") or "").lower()
    return bool(words and re.search(r"\b(?:" + "|".join(map(re.escape, sorted(words))) + r")\b", text, re.IGNORECASE)) \
        or bool(colour and re.search(r"\b" + re.escape(colour) + r"\b", text, re.IGNORECASE))


def _event_problems(req: str, sents: list[str], things: list[_Thing], g: dict, modality: str,
                    kinds: tuple[str, ...] | None = None, ids: set | None = None) -> list[str]:
    """every_event (kinds/ids None: all), or only the events of those kinds about those things."""
    w = _words()
    out = []
    if modality == "audio":
        for t in things:
            block = [s for s in sents if t.named_in(s)]
            if not block:
                out.append(f"{req}: the {t.noun} is not mentioned")
                continue
            if not any(w["sound_start"].search(s) for s in block):
                out.append(f"{req}: the {t.noun}'s start is not stated")
            if not any(w["sound_stop"].search(s) for s in block):
                out.append(f"{req}: the {t.noun}'s stop is not stated")
        return out
    by_id = {t.id: t for t in things}
    for e in g.get("events") or []:
        objs = [by_id[i] for i in e.get("objects") or [] if i in by_id and (ids is None or i in ids)]
        kind = (e.get("type") or "").lower()
        if kinds is not None and kind not in kinds:
            continue
        rx = w["event"].get(kind)
        if not objs or rx is None:
            continue
        said = any(any(o.named_in(s) for o in objs) and rx.search(s) for s in sents)
        if not said:
            names = " and ".join(f"the {o.noun}" for o in objs)
            out.append(f"{req}: {names} {kind} at {e.get('t', 0):.1f} s is not stated")
    return out


def _problems_without_grounding(text: str, modality: str | None, instruction_type: str | None, instruction: str,
                                reqs: list[str]) -> list[str]:
    spec = contracts()["requirements"]
    named = _vocab_named(instruction, modality)
    excluded = named[0] if instruction_type == "instance" and named else None
    if excluded:
        named = [n for n in named if n != excluded]
    out = []
    for req in reqs:
        if not spec[req].get("instruction_only"):
            continue
        if req == "names_named":
            out += [f"{req}: the {n} is not mentioned" for n in named if not _noun_rx(n).search(text)]
        elif req == "excludes_excluded" and excluded and _noun_rx(excluded).search(text):
            out.append(f"{req}: the excluded {excluded} is mentioned")
        elif req == "counts_named" and _words()["count_question"].search(instruction) and not _NUMBER.search(text):
            out.append(f"{req}: the instruction asks for a count and no number is stated")
    return out
