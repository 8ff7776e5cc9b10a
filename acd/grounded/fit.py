"""Fitting facts to a length constraint, measured exactly as acd/checks/length.py measures.

A caption is a list of *units* in priority order (unit 0 = the fact the instruction asks for). Each unit
has a few variants of different lengths (alternative phrasings of the same true fact, never padding), and
the fitter picks a subset and variants so the word count lands in [lo, hi] and as close as possible to a
preferred count. Word targets are an exact subset-sum over small integers, solved
with Python ints as bitsets (one shift-or per variant), so an exact 60-word caption costs microseconds.
"""
from __future__ import annotations

from dataclasses import dataclass

from acd.grounded.phrasing import lower_first
from acd.taxonomy import LengthConstraint


@dataclass(frozen=True)
class Target:
    unit: str | None  # "words" | "sentences" | None (no constraint: natural length)
    lo: int
    hi: int
    pref: int  # preferred value inside [lo, hi]


def target_for(lc: LengthConstraint | None, natural_sentences: int, natural_words: int) -> Target:
    if lc is None or lc.form == "none":
        return Target(None, natural_sentences, natural_sentences, natural_sentences)
    lo, hi = lc.target_bounds()
    pref = natural_words if lc.unit == "words" else natural_sentences
    if lc.form == "word_max":
        pref = hi  # "no more than N words": use the room, a near-limit caption carries more facts
    return Target(lc.unit, lo, hi, min(max(pref, lo), hi))


def choose_words(wcs: list[list[int]], n_core: int, lo: int, hi: int, pref: int,
                 strict: bool = False) -> list[tuple[int, int]] | None:
    """Pick (unit, variant) pairs, unit 0 always included, whose word counts sum into [lo, hi].

    Returns the picks in unit order, or None when no subset reaches the range. Among reachable totals
    the one nearest `pref` wins; core units (< n_core) are kept whenever possible, later ones are
    dropped first, so the caption keeps what the instruction asked for. strict: core units are never
    dropped (the type's contract needs every one); None when they cannot all fit.
    """
    mask = (1 << (hi + 1)) - 1
    reach = [0]
    r = 0
    for w in wcs[0]:
        r |= 1 << w
    r &= mask
    reach.append(r)
    for i, unit in enumerate(wcs[1:], start=1):
        acc = 0 if strict and i < n_core else r
        for w in unit:
            acc |= (r << w)
        r = acc & mask
        reach.append(r)
    window = r >> lo
    if not window:
        return None
    t = None
    for d in range(0, hi - lo + max(abs(pref - lo), abs(pref - hi)) + 1):
        for cand in (pref - d, pref + d):
            if lo <= cand <= hi and (r >> cand) & 1:
                t = cand
                break
        if t is not None:
            break
    picks: list[tuple[int, int]] = []
    for i in range(len(wcs) - 1, 0, -1):
        before = reach[i]
        options = list(range(len(wcs[i])))
        take = None
        if i >= n_core and (before >> t) & 1:
            continue  # optional unit: drop it when the rest can still make t
        for j in options:
            w = wcs[i][j]
            if w <= t and (before >> (t - w)) & 1:
                take = j
                break
        if take is None:  # a core unit that cannot fit: skipping must be possible
            continue
        picks.append((i, take))
        t -= wcs[i][take]
    j0 = next(j for j, w in enumerate(wcs[0]) if w == t)
    picks.append((0, j0))
    picks.reverse()
    return picks


def merge_sentences(sents: list[str]) -> str:
    """Join sentences into one: 'A. B. C.' -> 'A; b, and c.' (used when a form allows fewer sentences)."""
    if len(sents) == 1:
        return sents[0]
    body = [s.rstrip().rstrip(".!?") for s in sents]
    out = body[0]
    for k, s in enumerate(body[1:], start=1):
        s = lower_first(s)
        last = k == len(body) - 1 and not s.startswith("and ")  # "and so ..." carries its own "and"
        out += (", and " if last else "; ") + s
    return out + "."
