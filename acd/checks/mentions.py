"""Which grounded object a caption's words are about: the shared reading step of the motion, reference and
style checks.

A caption is read in units (sentences; a poem's lines), each unit in clauses. In a unit we find
  - object mentions: a category noun of the media ("the cat", "two stars", "the heart-shaped ...") with the
    colour/size words right before it narrowing which object of that category is meant;
  - place mentions: a grid phrase of the writer's lexicon and schemas/checks.yaml `facts.positions`
    ("high on the left" -> top left);
and a place belongs to the nearest object mention of its clause. Plain string scans over the precompiled
vocabulary of the fact check (acd/checks/factcheck.py), so the check stage stays fast.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from acd.checks.length import is_poem_layout, split_sentences

_TOK = re.compile(r"[a-z]+(?:-[a-z]+)*")
# Clause breaks inside a sentence: ; : and a comma before a conjunction ("..., and it ends ...").
_CLAUSE_BREAK = re.compile(r"[;:]|,\s+(?:and|while|but|then|before|after)\s+|,\s+(?=then\b)")
_DETERMINERS = {"the", "a", "an", "this", "that", "its", "one", "each"}


@dataclass(frozen=True)
class Mention:
    start: int
    end: int
    ids: frozenset      # the grounded objects this mention may be (one when it is resolved)
    noun: str


@dataclass(frozen=True)
class Place:
    start: int
    end: int
    grid: str           # "top left", "center", ...
    phrase: str


def units(text: str) -> list[str]:
    """Sentences of prose; the lines of a poem (a poem's line is what a reader takes as one statement)."""
    if is_poem_layout(text):
        return [ln.strip() for ln in text.splitlines() if ln.strip()]
    return split_sentences(text)


def clause_spans(low: str) -> list[tuple[int, int]]:
    out, start = [], 0
    for m in _CLAUSE_BREAK.finditer(low):
        out.append((start, m.start()))
        start = m.end()
    out.append((start, len(low)))
    return out


def clause_of(spans: list[tuple[int, int]], pos: int) -> tuple[int, int]:
    for a, b in spans:
        if a <= pos < b or (pos == b and b == spans[-1][1]):
            return a, b
    return spans[-1]


@lru_cache(maxsize=4096)
def _nouns_for(cats: tuple[str, ...]) -> dict[str, str]:
    """surface noun -> category, singular and plural, for this media's categories."""
    from acd.lexicon import plural

    out = {}
    for c in cats:
        out[c] = c
        out[plural(c)] = c
    return out


def _vocab():
    from acd.checks.vocab import fact_vocab

    return fact_vocab()


def objects_of(g: dict) -> list[dict]:
    return [o for o in (g.get("objects") or []) if o.get("category")]


def object_mentions(low: str, g: dict) -> list[Mention]:
    """Every mention of one of the media's objects in `low` (lower-case), in order."""
    objs = objects_of(g)
    if not objs:
        return []
    nouns = _nouns_for(tuple(sorted({o["category"] for o in objs})))
    v = _vocab()
    colours, sizes, size_norm = v["colours"], v["sizes"], v["size_norm"]
    toks = list(_TOK.finditer(low))
    out = []
    for i, m in enumerate(toks):
        cat = nouns.get(m.group(0))
        if not cat:
            continue
        cands = [o for o in objs if o["category"] == cat]
        j, col, sz = i - 1, None, None
        while j >= 0 and i - j <= 4 and toks[j].group(0) not in _DETERMINERS:
            w = toks[j].group(0)
            if w in colours and col is None:
                col = w
            elif w in sizes and sz is None:
                sz = size_norm.get(w, w)
            j -= 1
        narrowed = [o for o in cands if (col is None or o.get("colour") == col)]
        narrowed = [o for o in narrowed if sz not in ("small", "medium", "large") or o.get("size") == sz] or narrowed
        chosen = narrowed or cands
        start = toks[j + 1].start() if j + 1 < i else m.start()
        out.append(Mention(start, m.end(), frozenset(o["id"] for o in chosen), cat))
    return out


def place_mentions(low: str) -> list[Place]:
    """Grid places stated in `low`, longest phrase first (the fact check's position vocabulary)."""
    v = _vocab()
    return [Place(m.start(), m.end(), v["positions"][m.group(1)], m.group(1)) for m in v["pos_rx"].finditer(low)]


def owner(place: Place, mentions: list[Mention], spans: list[tuple[int, int]]) -> Mention | None:
    """The object mention a place belongs to: the nearest one in the place's clause (either side, the one
    before on a tie); None when the clause names no object."""
    a, b = clause_of(spans, place.start)
    inside = [mt for mt in mentions if a <= mt.start < b]
    if not inside:
        return None

    def dist(mt: Mention) -> tuple[int, int]:
        if mt.end <= place.start:
            return place.start - mt.end, 0
        return max(0, mt.start - place.end), 1

    return min(inside, key=dist)


def by_id(g: dict) -> dict[str, dict]:
    return {o["id"]: o for o in objects_of(g)}
