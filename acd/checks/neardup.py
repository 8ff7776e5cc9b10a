"""Near-duplicate chosen captions across media items: the signature of a degenerate generator.

A pair is flagged when its chosen caption is a near-duplicate (feature-set Jaccard >= threshold) of the
chosen caption of an *earlier row* with the same instruction type and a *different* media item. The same
item may legitimately get one caption under several length constraints, so same-media copies pass.

Features: word bigrams inside each sentence/clause of the lower-cased text, stopwords dropped
(schemas/checks.yaml), so case, punctuation, whitespace, article swaps and sentence re-ordering do not
hide a copy, while template captions with different slot values (colours, counts, places) stay apart.
Speed and exactness: identical feature sets are grouped by hash first (the degenerate case, O(n)); the
distinct sets go through prefix filtering (Bayardo et al., "All-Pairs"): with features in one fixed order
(rarest first), two sets with Jaccard >= t must share one of their first |A| - ceil(t|A|) + 1 features, which
for t = 0.98 is one or two features per set. Candidates get an exact Jaccard, so the result is exact
and deterministic (no hashing randomness, no false negatives).
"""
from __future__ import annotations

import re
import heapq
import math
from collections import defaultdict
from functools import lru_cache
from typing import Sequence


from acd.checks.config import load_checks_spec

# Shingles do not cross sentence or clause-level punctuation: a copy that re-orders sentences or swaps
# ". " for "; " keeps its features. Commas are ignored (inserting one is a paraphrase, not a new text).
_BOUNDARY_CHARS = ".!?;:…\n"
_TOKEN_OR_BOUNDARY = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*|[.!?;:…\n]")
NEAR_DUPLICATE = "near_duplicate"


@lru_cache(maxsize=1)
def _spec() -> tuple[int, frozenset]:
    s = load_checks_spec()["near_duplicate"]
    return int(s["shingle"]), frozenset(s["stopwords"])


def features(text: str | None) -> frozenset:
    """Word n-grams (tuples) within sentences/clauses, stopwords dropped. One regex pass per text."""
    k, stop = _spec()
    out: set = set()
    words: list[str] = []
    for tok in _TOKEN_OR_BOUNDARY.findall((text or "").lower()):
        if tok[0] in _BOUNDARY_CHARS:
            _add_shingles(out, words, k)
            words = []
        elif tok not in stop:
            words.append(tok)
    _add_shingles(out, words, k)
    return frozenset(out)


def _add_shingles(out: set, words: list[str], k: int) -> None:
    if len(words) < k:
        if words:
            out.add(tuple(words))
    elif k == 2:
        out.update(zip(words, words[1:]))
    else:
        out.update(tuple(words[i : i + k]) for i in range(len(words) - k + 1))


def jaccard(x: frozenset, y: frozenset) -> float:
    if not x and not y:
        return 1.0
    return len(x & y) / len(x | y)


class _Group:
    """Rows sharing one feature set: enough to answer "an earlier row with a different media item?"."""

    __slots__ = ("first", "first_media", "second")

    def __init__(self, row: int, media: str):
        self.first, self.first_media, self.second = row, media, None  # second: first row with other media

    def add(self, row: int, media: str) -> None:
        if self.second is None and media != self.first_media:
            self.second = row

    def earlier_other_media(self, row: int, media: str) -> bool:
        return (self.first < row and self.first_media != media) or (self.second is not None and self.second < row)


def near_duplicates(
    captions: Sequence[str | None],
    media_keys: Sequence[str],
    buckets: Sequence[str],
    threshold: float,
) -> list[bool]:
    """flags[i] is True when captions[i] near-duplicates an earlier caption of the same bucket
    (instruction type) for a different media key. Empty captions are never flagged (another check)."""
    n = len(captions)
    flags = [False] * n
    feats = [features(c) for c in captions]
    # 1. exact feature-set groups, per bucket
    groups: dict[tuple[str, frozenset], _Group] = {}
    row_group: list[_Group | None] = [None] * n
    for i in range(n):
        if not feats[i]:
            continue
        key = (buckets[i], feats[i])
        g = groups.get(key)
        if g is None:
            g = groups[key] = _Group(i, media_keys[i])
        else:
            g.add(i, media_keys[i])
        row_group[i] = g
    for i in range(n):
        g = row_group[i]
        if g is not None and g.earlier_other_media(i, media_keys[i]):
            flags[i] = True
    if threshold >= 1.0 or len(groups) < 2:
        return flags

    # 2. distinct sets: prefix-filter candidates, exact Jaccard to confirm
    similar = _similar_groups(list(groups), threshold)
    if not similar:
        return flags
    keys = list(groups)
    index = {id(groups[k]): gi for gi, k in enumerate(keys)}
    for i in range(n):
        g = row_group[i]
        if flags[i] or g is None:
            continue
        for other in similar.get(index[id(g)], ()):
            if groups[keys[other]].earlier_other_media(i, media_keys[i]):
                flags[i] = True
                break
    return flags


def _similar_groups(keys: list[tuple[str, frozenset]], threshold: float) -> dict[int, list[int]]:
    """Pairs of (bucket, feature set) keys, same bucket, with Jaccard >= threshold (exact)."""
    df: dict[str, int] = defaultdict(int)
    for _, fs in keys:
        for f in fs:
            df[f] += 1
    # one global order: rarest first, ties by the feature itself
    # (any fixed order keeps the filter exact; rarest-first keeps candidate lists short)
    rank = {f: r for r, f in enumerate(sorted(df, key=lambda f: (df[f], f)))}
    index: dict[tuple[str, str], list[int]] = defaultdict(list)
    for gi, (bucket, fs) in enumerate(keys):
        prefix = len(fs) - math.ceil(threshold * len(fs) - 1e-9) + 1
        for f in heapq.nsmallest(prefix, fs, key=rank.__getitem__):
            index[(bucket, f)].append(gi)
    similar: dict[int, list[int]] = defaultdict(list)
    checked: set[tuple[int, int]] = set()
    for members in index.values():
        for x in range(len(members)):
            a = keys[members[x]][1]
            for y in range(x + 1, len(members)):
                p = (members[x], members[y])
                if p in checked:
                    continue
                checked.add(p)
                b = keys[p[1]][1]
                if min(len(a), len(b)) < threshold * max(len(a), len(b)):  # size filter
                    continue
                if jaccard(a, b) >= threshold:
                    similar[p[0]].append(p[1])
                    similar[p[1]].append(p[0])
    return similar
