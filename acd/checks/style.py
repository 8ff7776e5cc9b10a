"""The style check: prose a blind reader rejects as a machine template. Reason `style_chosen`;
`problems()` lists each finding as 'kind: excerpt'.

Four kinds, all data in schemas/checks.yaml `style`:
  - stock phrasing (`stock`): filler and template sentences ("The kite is a medium diamond-shaped black kite
    in appearance.", "Just after a break of 0.2 seconds does the horn start.", "The main motion is that ...");
  - padding (`padding`): a sentence that says nothing asked for ("There are three objects altogether.";
    a bare duration only where the instruction does not ask about time);
  - facts after the closing line of a narrative, poem or theme caption (`closing`);
  - restating (`restate`): a later sentence that gives a thing (object, sound, backdrop, light) only facts
    already given for it ("The burst of beeps produces four beeps." after "... making four beeps").
Sentences are read one at a time (a poem line by line), lower-cased.
"""
from __future__ import annotations

import re
from functools import lru_cache

from acd.checks.config import load_checks_spec
from acd.checks.mentions import clause_spans, object_mentions, owner, place_mentions, units

STYLE = "style_chosen"
_TOK = re.compile(r"[a-z]+(?:-[a-z]+)*|\d+(?:\.\d+)?")


@lru_cache(maxsize=1)
def _spec() -> dict:
    s = load_checks_spec()["style"]
    r = s["restate"]
    return {
        "stock": [(e["name"], re.compile(e["rx"])) for e in s["stock"]],
        # one pass over a sentence first: most sentences match no pattern at all
        "any": re.compile("|".join(f"(?:{e['rx']})" for e in s["stock"] + s["padding"])),
        "padding": [(e["name"], re.compile(e["rx"]), re.compile(e["unless"], re.IGNORECASE)) for e in s["padding"]],
        "closing_types": set(s["closing"]["types"]),
        "closing_instruction": re.compile(s["closing"]["instruction"], re.IGNORECASE),
        "closing": re.compile(s["closing"]["rx"]),
        "definite": set(r["definite"]),
        "backdrop_role": re.compile(r["backdrop_role"]),
        "backdrops": set(r["backdrops"]),
        "light": re.compile(r["light"]),
        "light_role": re.compile(r["light_role"]),
        "sound_sets": re.compile(r["sound_sets"]),
        "generic_nouns": set(r["generic_nouns"]),
        "count_units": set(r["count_units"]),
    }


@lru_cache(maxsize=1)
def _words() -> dict:
    from acd.checks.vocab import fact_vocab as _vocab

    v = _vocab()
    return {
        "colours": v["colours"], "sizes": v["sizes"], "size_norm": v["size_norm"], "nouns": v["nouns"],
        "singular_of": v["singular_of"], "sounds": {s for s in v["sounds"] if " " not in s},
        "loud": {"loud": "loud", "soft": "soft", **v["loudness"]},
        "pitch": {"high": "high", "low": "low", "shrill": "high", "deep": "low", "high-pitched": "high",
                  "low-pitched": "low", "mid-pitched": "mid", "mid-range": "mid"},
        "numbers": set(v["numbers"]) - {"zero"},
    }


def _parse(grounding: dict | str | None) -> dict | None:
    from acd.checks.factcheck import parsed

    return parsed(grounding)


def _singular(word: str) -> str:
    noun = _lemmas(word).get("NOUN")
    return noun[0] if noun else word


def _is_closing_type(instruction: str | None, instruction_type: str | None) -> bool:
    sp = _spec()
    if instruction_type:
        return instruction_type in sp["closing_types"]
    return bool(instruction and sp["closing_instruction"].search(instruction))


def _things_and_facts(low: str, modality: str | None, g: dict | None, prev_things: list[str]) -> set[tuple[str, str]]:
    """(thing, fact) pairs a sentence states, per clause; things without facts and facts without things
    state nothing. An "It"/"Its" sentence's thing is the one named before."""
    sp, w = _spec(), _words()
    low = sp["sound_sets"].sub(lambda m: m.group(1), low)
    toks = list(re.finditer(_TOK, low))
    pairs: set[tuple[str, str]] = set()
    ments = object_mentions(low, g) if g and g.get("objects") else []
    spans = clause_spans(low)
    backdrop = bool(sp["backdrop_role"].search(low))
    light = sp["light"].search(low) if sp["light_role"].search(low) else None
    things_of = [set() for _ in spans]
    facts_of = [set() for _ in spans]
    ci = 0
    for mt in ments:
        while ci + 1 < len(spans) and mt.start >= spans[ci][1]:
            ci += 1
        things_of[ci].add(",".join(sorted(mt.ids)))
    ci = 0
    words = [m.group(0) for m in toks]
    for i, m in enumerate(toks):  # one pass; each token's clause by a moving pointer
        while ci + 1 < len(spans) and m.start() >= spans[ci][1]:
            ci += 1
        things, facts = things_of[ci], facts_of[ci]
        t = words[i]
        if not ments and t in w["nouns"]:
            things.add(w["singular_of"].get(t, t))
        if modality == "audio" and (t in w["sounds"] or t.rstrip("s") in w["sounds"]):
            things.add(t.rstrip("s"))
        if t in w["colours"] or t in w["sizes"] or t in w["loud"] or t in w["pitch"]:
            j = i - 1
            while j >= 0 and (words[j] in w["colours"] or words[j] in w["sizes"]):
                j -= 1
            if j >= 0 and words[j] in sp["definite"]:
                continue  # "the red ball": a name, not a statement
            if t in w["colours"]:
                facts.add(f"colour:{t}")
            elif t in w["sizes"]:
                facts.add(f"size:{w['size_norm'].get(t, t)}")
            elif t in w["loud"]:
                facts.add(f"loud:{w['loud'][t]}")
            else:
                facts.add(f"pitch:{w['pitch'][t]}")
        elif t in w["numbers"] and modality == "audio" and any(
                _singular(x) in sp["count_units"] for x in words[i + 1:i + 3]):
            facts.add(f"count:{t}")  # "four beeps", "two short whistles"; not "one hears"
        elif backdrop and t in sp["backdrops"]:
            things.add("backdrop")
            facts.add(f"backdrop:{t}")
    for k, (a, b) in enumerate(spans):
        things, facts = things_of[k], facts_of[k]
        if light is not None and a <= light.start() < b:
            things.add("light")
            facts.add("light:" + light.group(0).replace(" ", ""))
        if not things and prev_things and re.match(r"^\W*(?:it|its)\b", low[a:b].strip()):
            things = {prev_things[-1]}
        pairs |= {(t, f) for t in things for f in facts if not (t in ("backdrop", "light") and f.split(":")[0]
                                                                 not in ("backdrop", "light", "colour"))}
    if ments:  # a place belongs to the object nearest to it in its clause
        for p in place_mentions(low):
            mt = owner(p, ments, spans)
            if mt is not None:
                from acd.checks.motion import moment

                pairs.add((",".join(sorted(mt.ids)), f"place:{p.grid}:{moment(low, p, spans, []) or ''}"))
    return pairs


@lru_cache(maxsize=50000)
def _lemmas(word: str) -> dict:
    from lemminflect import getAllLemmas

    return getAllLemmas(word)


# Before a word that is both a noun and a verb ("floor", "spreads"), these make it the noun: "a plank floor".
_NOUN_CUES = {"a", "an", "the", "its", "their", "of", "with", "in", "on", "at", "and", "some", "any", "no", "every",
              "each", "his", "her", "our", "your", "two", "three", "four", "five"}


def _new_nouns(low: str, seen_nouns: set[str]) -> set[str]:
    """Nouns of `low` not seen before (lemminflect's lexicon; `generic_nouns` add nothing)."""
    generic = _spec()["generic_nouns"]
    toks = _TOK.findall(low)
    out = set()
    for i, t in enumerate(toks):
        lem = _lemmas(t)
        noun = lem.get("NOUN")
        if not noun or t in seen_nouns or noun[0] in generic or noun[0] in seen_nouns:
            continue
        if ("VERB" in lem or "ADJ" in lem or "ADV" in lem) and not (
                i > 0 and (toks[i - 1] in _NOUN_CUES or set(_lemmas(toks[i - 1])) == {"ADJ"}
                           or toks[i - 1] in _words()["colours"] or toks[i - 1] in _words()["sizes"])):
            continue  # "the room spreads": a verb here
        out.add(noun[0])
    return out


def _restated(units_low: list[str], modality: str | None, g: dict | None) -> list[str]:
    out, seen, prev_things = [], set(), []
    seen_nouns: set[str] = set()
    for low in units_low:
        pairs = _things_and_facts(low, modality, g, prev_things)
        new = _new_nouns(low, seen_nouns)
        if pairs and pairs <= seen and not new:
            facts = sorted({f for _, f in pairs})
            out.append(f"restated: {low[:70]!r} ({', '.join(facts)})")
        seen |= pairs
        seen_nouns |= new | set(_TOK.findall(low))
        things = [t for t, _ in sorted(pairs)]
        if things:
            prev_things = things
    return out


def problems(text: str, modality: str | None = None, instruction: str | None = None,
             instruction_type: str | None = None, grounding: dict | str | None = None) -> list[str]:
    """Every stilted, padded, restated or after-the-end sentence of `text`; [] when none."""
    if not text or not text.strip():
        return []
    sp = _spec()
    g = _parse(grounding)
    lows = [u.lower().strip() for u in units(text)]
    out: list[str] = []
    for low in lows:
        if not sp["any"].search(low):
            continue
        for name, rx in sp["stock"]:
            if rx.search(low):
                out.append(f"{name}: {low[:70]!r}")
        for name, rx, unless in sp["padding"]:
            if rx.search(low) and not (instruction and unless.search(instruction)):
                out.append(f"padding_{name}: {low[:70]!r}")
    if _is_closing_type(instruction, instruction_type):
        for i, low in enumerate(lows[:-1]):
            if sp["closing"].search(low):
                out.append(f"after_closing: {len(lows) - i - 1} sentence(s) after {low[:60]!r}")
                break
    out += _restated(lows, modality, g)
    return out
