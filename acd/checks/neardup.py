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

import heapq
import math
from itertools import chain
from collections import Counter, defaultdict
from functools import lru_cache
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from acd.checks.config import load_checks_spec

# Shingles do not cross sentence or clause-level punctuation: a copy that re-orders sentences or swaps
# ". " for "; " keeps its features. Commas are ignored (inserting one is a paraphrase, not a new text).
_BOUNDARY_RX = r"[.!?;:…\n]+"
_SEPARATOR_RX = r"[^a-z0-9'|]+"
NEAR_DUPLICATE = "near_duplicate"


@lru_cache(maxsize=1)
def _spec() -> tuple[int, frozenset]:
    s = load_checks_spec()["near_duplicate"]
    return int(s["shingle"]), frozenset(s["stopwords"])


def _min_features() -> int:
    return int(load_checks_spec()["near_duplicate"].get("min_features", 0))


def feature_sets(captions: Sequence[str | None]) -> list[frozenset[int]]:
    """Per caption, its word n-grams within sentences/clauses (stopwords dropped) as integer ids.

    Vectorised with pyarrow + numpy: a per-caption Python loop was the check stage's bottleneck. Ids are
    consistent within one call only, so compare sets from the same call.
    """
    k, stop = _spec()
    n = len(captions)
    marked = pc.replace_substring_regex(pc.utf8_lower(pa.array(captions, pa.string())), _BOUNDARY_RX, " | ")
    toks = pc.split_pattern_regex(pc.fill_null(marked, ""), _SEPARATOR_RX)
    rows = pc.list_parent_indices(toks).to_numpy()
    enc = pc.list_flatten(toks).dictionary_encode()
    idx = enc.indices.to_numpy().astype(np.int64)
    vocab = enc.dictionary.to_pylist()
    drop = np.array([w.strip("'") == "" or w in stop for w in vocab] + [True], dtype=bool)
    boundary = np.array([w == "|" for w in vocab] + [False], dtype=bool)
    keep = ~drop[idx]
    idx, rows = idx[keep], rows[keep]
    is_word = ~boundary[idx]
    # a word opens a new segment at a row start or right after a boundary token
    new_seg = np.ones(len(idx), dtype=bool)
    new_seg[1:] = (rows[1:] != rows[:-1]) | ~is_word[:-1]
    idx, rows, new_seg = idx[is_word], rows[is_word], new_seg[is_word]
    seg = np.cumsum(new_seg)
    seg_len = np.bincount(seg)[seg] if len(seg) else seg
    m = len(idx) - k + 1
    if m > 0:
        fid = idx[:m].copy()
        same = np.ones(m, dtype=bool)
        for j in range(1, k):  # n-gram id = base-(vocab+1) number of its word ids
            fid = fid * (len(vocab) + 1) + idx[j : m + j]
            same &= seg[j : m + j] == seg[:m]
        f, r = fid[same], rows[:m][same]
    else:
        f, r = np.zeros(0, np.int64), np.zeros(0, np.int64)
    short = seg_len < k  # a segment shorter than n contributes its words (negative ids)
    f = np.concatenate([f, -(idx[short] + 1)])
    r = np.concatenate([r, rows[short]])
    order = np.lexsort((f, r))
    f, r = f[order], r[order]
    bounds = np.searchsorted(r, np.arange(n + 1))
    return [frozenset(f[bounds[i] : bounds[i + 1]].tolist()) for i in range(n)]


def features(text: str | None) -> frozenset[int]:
    """feature_sets for one text (ids are comparable only within one call)."""
    return feature_sets([text])[0]


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
    floor = _min_features()
    feats = [f if len(f) >= floor else frozenset() for f in feature_sets(captions)]
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


def _similar_groups(keys: list[tuple[str, frozenset[int]]], threshold: float) -> dict[int, list[int]]:
    """Pairs of (bucket, feature set) keys, same bucket, with Jaccard >= threshold (exact)."""
    df = Counter(chain.from_iterable(fs for _, fs in keys))  # document frequency, counted in C
    # one global order: rarest first, ties by the feature itself
    # (any fixed order keeps the filter exact; rarest-first keeps candidate lists short)
    rank = {f: r for r, f in enumerate(sorted(df, key=lambda f: (df[f], f)))}
    index: dict[tuple[str, int], list[int]] = defaultdict(list)
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
