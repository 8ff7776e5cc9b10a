"""Near-duplicate chosen captions across media items: the signature of a degenerate generator.

A pair is flagged when its chosen caption is a near-duplicate (feature-set Jaccard >= threshold) of the
chosen caption of an *earlier row* with the same instruction type and a *different* media item. The same
item may legitimately get one caption under several length constraints, so same-media copies pass.

Features: word bigrams inside each sentence of the lower-cased text, stopwords dropped (schemas/checks.yaml),
so case, punctuation, whitespace, article swaps and sentence re-ordering do not hide a copy, while
template captions with different slot values (colours, counts, positions) stay apart.
Speed: identical feature sets are grouped by hash first (the degenerate case, O(n)); the remaining distinct
sets go through MinHash (fixed seed, numpy) with LSH banding, and only candidate pairs get an exact Jaccard.
"""
from __future__ import annotations

import re
import zlib
from collections import defaultdict
from functools import lru_cache
from typing import Sequence

import numpy as np

from acd.checks.config import load_checks_spec
from acd.checks.length import split_sentences

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")
_PRIME = np.uint64((1 << 31) - 1)
NEAR_DUPLICATE = "near_duplicate"


@lru_cache(maxsize=1)
def _spec() -> tuple[int, frozenset, int, int, np.ndarray, np.ndarray]:
    s = load_checks_spec()["near_duplicate"]
    rng = np.random.default_rng(int(s["seed"]))
    n = int(s["num_perm"])
    a = rng.integers(1, int(_PRIME), size=n, dtype=np.uint64)
    b = rng.integers(0, int(_PRIME), size=n, dtype=np.uint64)
    if n % int(s["bands"]):
        raise ValueError("checks.yaml near_duplicate: num_perm must be a multiple of bands")
    return int(s["shingle"]), frozenset(s["stopwords"]), n, int(s["bands"]), a, b


def features(text: str | None) -> frozenset[str]:
    k, stop, *_ = _spec()
    out: set[str] = set()
    for sent in split_sentences((text or "").lower()):
        words = [w for w in _TOKEN.findall(sent) if w not in stop]
        if len(words) < k:
            if words:
                out.add(" ".join(words))
            continue
        out.update(" ".join(words[i : i + k]) for i in range(len(words) - k + 1))
    return frozenset(out)


def jaccard(x: frozenset, y: frozenset) -> float:
    if not x and not y:
        return 1.0
    return len(x & y) / len(x | y)


def _minhash(sets: list[frozenset]) -> np.ndarray:
    """(len(sets), num_perm) uint64 signatures; crc32 keeps the hash stable across processes."""
    _, _, n, _, a, b = _spec()
    sig = np.full((len(sets), n), np.iinfo(np.uint64).max, dtype=np.uint64)
    lengths = [len(s) for s in sets]
    flat = np.fromiter((zlib.crc32(f.encode()) for s in sets for f in s), dtype=np.uint64, count=sum(lengths))
    if flat.size == 0:
        return sig
    hashed = (flat[:, None] % _PRIME * a[None, :] + b[None, :]) % _PRIME  # (total features, num_perm)
    starts = np.cumsum([0] + lengths[:-1])
    nonempty = np.array(lengths) > 0
    sig[nonempty] = np.minimum.reduceat(hashed, starts[nonempty], axis=0)
    return sig


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

    # 2. distinct sets: MinHash + LSH candidates, exact Jaccard to confirm
    keys = list(groups)
    sig = _minhash([k[1] for k in keys])
    _, _, n_perm, bands, _, _ = _spec()
    rows_per_band = n_perm // bands
    similar: dict[int, list[int]] = defaultdict(list)  # group index -> similar group indices
    seen_pairs: set[tuple[int, int]] = set()
    for band in range(bands):
        cols = sig[:, band * rows_per_band : (band + 1) * rows_per_band]
        table: dict[tuple, list[int]] = defaultdict(list)
        for gi, row in enumerate(map(bytes, cols)):
            table[(keys[gi][0], row)].append(gi)
        for members in table.values():
            for x in range(len(members)):
                for y in range(x + 1, len(members)):
                    p = (members[x], members[y])
                    if p in seen_pairs:
                        continue
                    seen_pairs.add(p)
                    if jaccard(keys[p[0]][1], keys[p[1]][1]) >= threshold:
                        similar[p[0]].append(p[1])
                        similar[p[1]].append(p[0])
    if not similar:
        return flags
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
