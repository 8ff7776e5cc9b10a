"""The rejected-caption check: a pair's rejected caption must be worse than its chosen one, in the way its
recorded rejection_strategy says (reason code `rejected_not_worse`; non-q-c-c pairs only).

  hallucination       the fact check finds a false statement in it that the chosen caption does not make;
                      without a grounding: it at least differs from the chosen in content words;
  ignore_instruction  the coverage check (acd/checks/coverage.py: the type's contract, an instance exclusion)
                      finds a miss in it that the chosen caption does not have;
  length_violation    it breaks the pair's length constraint (without a constraint: as weak_model);
  weak_model          it states a false fact the chosen does not, or it states measurably fewer grounded facts
                      than the chosen (stated_facts below); without a grounding: fewer vocabulary facts.

Blind readers found rejected captions that were no worse (an ignore_instruction "brief" rejection that was a
detail caption as long as the chosen, with one more true detail); a pair like that teaches nothing, so it is
regenerated or dropped. Without a strategy (or for "identical") nothing is checked.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

REJECTED = "rejected_not_worse"
_TOKS = re.compile(r"[a-z]+(?:-[a-z]+)*")
_NUM = re.compile(r"\d+(?:\.\d+)?")


def not_worse(instruction: str | None, chosen: str | None, rejected: str | None, *, modality: str | None,
              instruction_type: str | None, rejection_strategy: str | None, constraint: Any = None,
              grounding: str | dict | None = None) -> str | None:
    """Why the rejected caption is not worse in its recorded way; None when it is, or when the pair lacks
    what the check needs (no strategy, "identical", an empty caption)."""
    if not rejection_strategy or rejection_strategy == "identical" or not chosen or not rejected:
        return None
    if not chosen.strip() or not rejected.strip():
        return None
    modality = modality or "image"
    g = _parse(grounding)
    s = rejection_strategy
    if s == "length_violation" and (constraint is None or getattr(constraint, "form", "none") == "none"):
        s = "weak_model"  # the writer's rule too: without a constraint a length violation is a weak caption
    if s == "hallucination":
        if g is None:
            extra = _content_words(rejected) - _content_words(chosen)
            return None if extra else "hallucination: no content word the chosen caption lacks"
        return None if _new_false(instruction, chosen, rejected, modality, g) else \
            "hallucination: the fact check finds nothing false in it"
    if s == "ignore_instruction":
        if g is None and not _decidable_without_grounding(instruction, modality, instruction_type):
            return None  # nothing named, excluded or counted: without a grounding there is nothing to hold it to
        miss = _coverage(rejected, modality, instruction_type, instruction, g)
        if not miss:
            return "ignore_instruction: it meets the type's contract and exclusions"
        if set(miss) <= set(_coverage(chosen, modality, instruction_type, instruction, g)):
            return "ignore_instruction: it misses nothing the chosen caption does not"
        return None
    if s == "length_violation":
        from acd.checks.length import satisfies

        return "length_violation: it meets the length constraint" if satisfies(rejected, constraint) else None
    if s == "weak_model":
        if g is None:
            # Without a grounding nothing says which caption is truer: a weaker model's caption may well name
            # more things, and wrongly (the release's 8B captions do). Undecided, not failed.
            return None
        if _new_false(instruction, chosen, rejected, modality, g):
            return None
        n_r, n_c = len(stated_facts(rejected, modality, g)), len(stated_facts(chosen, modality, g))
        return None if n_r < n_c else f"weak_model: nothing false and {n_r} grounded facts, chosen {n_c}"
    return None  # an unknown strategy: not enough information


def _decidable_without_grounding(instruction: str | None, modality: str | None, itype: str | None) -> bool:
    """Whether the instruction itself names, excludes or counts something the coverage check can hold a caption to."""
    from acd.checks.coverage import _vocab_named, _words

    ins = instruction or ""
    return bool(_vocab_named(ins, modality)) or bool(_words()["count_question"].search(ins))


def _parse(grounding: str | dict | None) -> dict | None:
    from acd.checks.factcheck import parsed

    return parsed(grounding)


def _new_false(instruction, chosen, rejected, modality, g) -> bool:
    """The fact check finds a false statement in the rejected caption that the chosen does not make."""
    from acd.checks.factcheck import problems

    bad = problems(rejected, modality, g, instruction)
    return bool(bad) and not set(bad) <= set(problems(chosen, modality, g, instruction))


def _coverage(text, modality, itype, instruction, g) -> list[str]:
    try:  # the coverage check (schemas/contracts.yaml); an older tree without it: the exclusion/naming subset
        from acd.checks.coverage import problems as coverage_problems
    except ImportError:  # pragma: no cover - only before acd/checks/coverage.py existed
        return _named_misses(text, modality, itype, instruction, g)
    return coverage_problems(text, modality, itype, instruction, g)


def _named_misses(text, modality, itype, instruction, g) -> list[str]:
    """Instance: the excluded thing is mentioned; other types: a thing the instruction names is missing."""
    named = _instruction_nouns(instruction or "", modality, g)
    if not named:
        return []
    if itype == "instance":
        return [f"excludes_excluded: {named[0]}"] if _noun_rx(named[0]).search(text) else []
    return [f"names_named: {n}" for n in named if not _noun_rx(n).search(text)]


def _instruction_nouns(instruction: str, modality: str, g: dict | None) -> list[str]:
    v = _fv()
    if g is not None:
        pool = [(s.get("source") if modality == "audio" else s.get("category")) or ""
                for s in (g.get("sounds") if modality == "audio" else g.get("objects")) or []]
    else:
        pool = sorted(v["sounds"] if modality == "audio" else v["objects"])
    hits = sorted((m.start(), n) for n in set(pool) if n for m in [_noun_rx(n).search(instruction)] if m)
    return [n for _, n in hits]


@lru_cache(maxsize=4096)
def _noun_rx(noun: str) -> re.Pattern:
    plural = _fv()["plural_of"].get(noun) or noun + "s"
    return re.compile(r"\b(?:" + "|".join(sorted({re.escape(noun), re.escape(plural)}, key=len, reverse=True)) + r")\b",
                      re.IGNORECASE)


@lru_cache(maxsize=1)
def _fv() -> dict[str, Any]:
    from acd.checks.vocab import fact_vocab as _vocab

    return _vocab()


@lru_cache(maxsize=1)
def _stopwords() -> frozenset:
    from acd.checks.config import load_checks_spec

    return frozenset(load_checks_spec()["near_duplicate"]["stopwords"])


def _content_words(text: str) -> set[str]:
    return {w for w in _TOKS.findall(text.lower()) if w not in _stopwords()}


# ------------------------------------------------------------------------------------ grounded facts
@lru_cache(maxsize=1)
def _lex() -> dict[str, Any]:
    from acd.lexicon import lexicon

    return lexicon()


def _alts(value: str | None, table: str) -> list[str]:
    if not value:
        return []
    return [value.lower()] + [a.lower() for a in (_lex().get(table) or {}).get(value, [])]


def _has(phrases: list[str], low: str) -> bool:
    return any(re.search(r"\b" + re.escape(p) + r"\b", low) for p in phrases if p)


# Clause ends as the fact check splits them, except a decimal point ("from 0.1 to 0.7 seconds" is one clause).
_CLAUSE = re.compile(r"[;!?\n]+|\.(?!\d)|,\s+(?:and|while|but|as)\s+")


def _clauses(low: str) -> list[str]:
    return [c for c in _CLAUSE.split(low) if c.strip()]


def stated_facts(text: str, modality: str, grounding: str | dict) -> frozenset:
    """The grounded facts a caption states truly: each thing named, and its colour, size, place, motion,
    features (loudness, pitch, start, stop, pattern for a sound) bound to it in a clause about it alone (or
    right before its noun); the backdrop, lighting, decorations, camera move, and each video event.

    A count of what a caption tells a reader, used to say a weak_model rejection tells measurably less."""
    g = _parse(grounding)
    low = " ".join((text or "").lower().split("\n"))
    if not low.strip() or not g:
        return frozenset()
    if modality == "audio":
        return frozenset(_audio_facts(low, g))
    return frozenset(_visual_facts(low, g, modality))


def _visual_facts(low: str, g: dict, modality: str) -> set[tuple]:
    v = _fv()
    objs = [o for o in g.get("objects") or [] if o.get("category")]
    out: set[tuple] = set()
    last: list[dict] = []
    for clause in _clauses(low):
        toks = _TOKS.findall(clause)
        here = [o for o in objs if _noun_rx(o["category"].lower()).search(clause)]
        if not here and last and re.search(r"\b(?:it|its)\b", clause):
            here = last  # "It is easy to see a string on it": the thing named last
        if not here:
            continue
        last = here
        cats = {o["category"] for o in here}
        for o in here:
            oid = o.get("id")
            out.add(("named", oid))
            colour, size = (o.get("colour") or "").lower(), (o.get("size") or "").lower()
            sizes = set(_alts(size, "size_alt"))
            if len(cats) == 1:  # a clause about this object alone: its words anywhere in the clause
                if colour and colour in toks:
                    out.add(("colour", oid))
                if sizes and sizes & set(toks):
                    out.add(("size", oid))
                for m in v["pos_rx"].finditer(clause):
                    if v["positions"][m.group(1)] in (o.get("position"), o.get("end_position")):
                        out.add(("place", oid))
                act = (o.get("action") or "").lower()
                if act and act in clause:
                    out.add(("motion", oid))
            else:  # several things: only words right before this object's noun ("a small red kite")
                for i, t in enumerate(toks):
                    if _norm(t) != o["category"].lower():
                        continue
                    before = toks[max(0, i - 3):i]
                    if colour and colour in before:
                        out.add(("colour", oid))
                    if sizes and sizes & set(before):
                        out.add(("size", oid))
        for o in here:
            for a in o.get("attributes") or []:
                head = (a or "").lower().split()[-1:]
                if head and head[0] != o["category"].lower() and head[0] in toks:
                    out.add(("feature", o.get("id"), head[0]))
    scene = g.get("scene") or {}
    bg = scene.get("background")
    if bg and _has([p.split()[-1] for p in _alts(bg, "background_alt")], low):
        out.add(("background",))
    if _has(_alts(_lex().get("lighting_names", {}).get(scene.get("lighting"), scene.get("lighting")), "lighting_alt"), low):
        out.add(("lighting",))
    for d in scene.get("decorations") or []:
        if _has(_alts(d, "decor_alt"), low):
            out.add(("decor", d))
    cam = (g.get("camera") or {}).get("motion")
    if modality == "video" and cam and cam in v["camera"] and v["camera"][cam].search(low):
        out.add(("camera",))
    by_id = {o.get("id"): o for o in objs}
    for k, e in enumerate(g.get("events") or []):
        cats = [by_id[i]["category"].lower() for i in e.get("objects") or [] if i in by_id]
        t = float(e.get("t") or 0.0)
        for clause in _clauses(low):
            if not any(_noun_rx(c).search(clause) for c in cats):
                continue
            if (t <= 0.05 and _has(_lex().get("when_start", []), clause)) or _says_time(clause, t):
                out.add(("event", k))
                break
    return out


def _norm(tok: str) -> str:
    return _fv()["singular_of"].get(tok, tok[:-1] if tok.endswith("s") else tok)


def _says_time(clause: str, t: float) -> bool:
    return any(abs(float(n) - t) <= 0.05 for n in _NUM.findall(clause))


def _audio_facts(low: str, g: dict) -> set[tuple]:
    v = _fv()
    lex = _lex()
    sounds = [s for s in g.get("sounds") or [] if s.get("source")]
    names = {id(s): [s["source"].lower(), lex.get("sound_names", {}).get(s["source"], s["source"]).lower()]
             + [n.lower() for n in lex.get("sound_names_alt", {}).get(s["source"], [])] for s in sounds}
    out: set[tuple] = set()
    dur = g.get("duration_s")
    from acd.lexicon import when_bucket

    quiet = low
    for phrase in v["audio_backgrounds"]:  # "a soft, rain-like hiss" is the backdrop's, not a sound's softness
        quiet = quiet.replace(phrase, " ")
    for clause in _clauses(quiet):
        here = [s for s in sounds if any(_noun_rx(n).search(clause) for n in names[id(s)])]
        if len(here) > 1:  # "the drum and the bell": named, nothing bound
            out.update(("named", s.get("id")) for s in here)
            continue
        if not here:
            continue
        s = here[0]
        sid = s.get("id")
        out.add(("named", sid))
        loud = {v["loudness"].get(w, w) for w in v["loud_rx"].findall(clause)}
        if s.get("loudness") in loud:
            out.add(("loudness", sid))
        pitch = lex["pitch"].get(s.get("pitch"))
        if pitch and _has(_alts(s.get("pitch"), "pitch_alt") + [pitch, f"{pitch}-pitched"], clause):
            out.add(("pitch", sid))
        start, end = float(s.get("start") or 0.0), float(s.get("end") or 0.0)
        bucket = when_bucket(start, dur)
        when = [lex["when_audio"][bucket]] + list(lex.get("when_audio_alt", {}).get(bucket, []))
        if _says_time(clause, start) or _has(when, clause):
            out.add(("start", sid))
        if _says_time(clause, end):
            out.add(("stop", sid))
        if s.get("pattern") and s["pattern"].lower() in clause:
            out.add(("pattern", sid))
    scene = g.get("scene") or {}
    bg = scene.get("background")
    if bg and _has(_alts(bg, "audio_background_alt") + [lex.get("audio_background", {}).get(bg, "")], low):
        out.add(("background",))
    if dur and _says_time(low, float(dur)) and "second" in low:
        out.add(("duration",))
    return out
