"""Media deduplication and evaluation-media overlap (issue 25).

Hashes are computed where the media are, in the ingest units (`hash_rows`, one media_hashes/<batch> part per
batch, written before the batch's ingest part); the dedup stage (acd.stages.dedup) matches them once:

- exact: the media_key (sha256 of the stored bytes). A copy in the same batch never reaches a media row (the
  ingest Collector quarantines it); one in a later batch is quarantined here.
- near (recipe `dedup.media: near`, the default): images by a 64-bit pHash within `image_max_distance` bits;
  videos by the pHashes of `video_frames` evenly spread frames, aligned, mean distance within
  `video_max_distance`; audio by Chromaprint fingerprints, bit error rate within `audio_max_ber` at the best
  offset of up to `audio_max_offset` items. Thresholds: schemas/ingest.yaml `dedup:` (calibrated by
  tests/test_media_dedup.py on transformed copies).

Matching never compares all pairs. pHashes go through multi-index hashing: four 16-bit bands; two hashes
within distance d agree within d // 4 bits on at least one band (pigeonhole), so each hash probes its
bands' neighbours within that radius (sorted arrays + searchsorted, vectorised) and only the hashes found
there are compared. Audio fingerprints are indexed by their items' 16-bit halves (an inverted index); two
clips that share at least `audio_min_votes` halves are compared. A half that occurs in more than
`audio_key_cap` clips (silence, a steady hum) says nothing about identity and is not indexed.

Order: items are taken in the source's deterministic order (its batches, then rows); an item that matches an
evaluation item is `eval_overlap`; otherwise it is a `duplicate` of the earliest *kept* item it matches (so
the named media_key is always one the dataset keeps; no chains through quarantined items), else kept.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pyarrow as pa

HASH_SCHEMA = pa.schema([
    pa.field("source", pa.string(), nullable=False),
    pa.field("source_id", pa.string(), nullable=False),
    pa.field("media_key", pa.string(), nullable=False),
    pa.field("modality", pa.string(), nullable=False),
    pa.field("phash", pa.list_(pa.int64())),  # image: one pHash; video: one per sampled frame, in time order
    pa.field("fp", pa.list_(pa.uint32())),    # audio: Chromaprint's raw fingerprint
])

# What the dedup stage decided, one row per quarantined media row; `excluded`: its media_key leaves the media
# table (false for a byte-identical copy from a later batch: the key stays, through the kept row).
DEDUP_SCHEMA = pa.schema([
    pa.field("media_key", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("source_id", pa.string(), nullable=False),
    pa.field("reason", pa.string(), nullable=False),   # duplicate | eval_overlap
    pa.field("kept", pa.string()),                     # duplicate: the kept media_key; eval_overlap: null
    pa.field("excluded", pa.bool_(), nullable=False),
])

BANDS = 4  # 16-bit bands of a 64-bit pHash


def thresholds(limits: Any) -> Any:
    """The `dedup:` block of the ingest limits (schemas/ingest.yaml, a source's `limits:` over it)."""
    from acd.media.limits import as_limits

    return as_limits(limits).dedup


def near_mode(recipe, source) -> str:
    """The matching the build's own items get: recipe dedup.media, except that a source whose items are
    distinct by construction (`distinct_items`: the synthetic source, one procedural scene per seed and
    index) is matched by bytes only. Its scenes share a vocabulary (backgrounds, voices), so they do come
    within the near thresholds (demo: pictures 12 pHash bits apart, two audio clips at bit error rate 0.16)
    without being copies of each other."""
    mode = recipe.dedup.media
    return "exact" if mode == "near" and getattr(source, "distinct_items", False) else mode


def perceptual(recipe, source) -> bool:
    """Whether ingest computes perceptual hashes: near deduplication, or evaluation media to check against
    (a source distinct by construction is checked against evaluation media by bytes only)."""
    if getattr(source, "distinct_items", False):
        return False
    return recipe.dedup.media == "near" or bool(recipe.decontaminate.media)


def wanted(recipe) -> bool:
    """Whether the build deduplicates at all (hashes at ingest, the dedup stage)."""
    return recipe.dedup.media != "off" or bool(recipe.decontaminate.media)


def source_limits(section) -> Any:
    return getattr(section, "limits", None)


# --- hashing (in the ingest units) --------------------------------------------------------------------------

def hash_rows(rows: Iterable[dict], run_dir: Path, limits: Any, near: bool) -> pa.Table:
    """media_hashes rows for media rows (MEDIA_SCHEMA dicts) whose files are under run_dir. A file that does
    not hash (it passed ingest's probes, so this is rare) gets no perceptual hash: it is matched exactly."""
    from acd.media.fingerprint import audio_fingerprint, image_phash, video_phashes

    cfg = thresholds(limits)
    out = []
    for r in rows:
        ph: list[int] | None = None
        fp: list[int] | None = None
        if near:
            try:
                data = (Path(run_dir) / r["uri"]).read_bytes()
                if r["modality"] == "image":
                    ph = [image_phash(data)]
                elif r["modality"] == "video":
                    ph = video_phashes(data, int(cfg.video_frames), limits)
                elif r["modality"] == "audio":
                    fp = audio_fingerprint(data)
            except Exception:  # noqa: BLE001 - see the docstring: exact matching still applies
                ph = fp = None
        out.append({"source": r["source"], "source_id": r["source_id"], "media_key": r["media_key"],
                    "modality": r["modality"], "phash": ph, "fp": fp})
    from acd.records import rows_to_table

    return rows_to_table(out, HASH_SCHEMA)


# --- matching -----------------------------------------------------------------------------------------------

def _u64(values) -> np.ndarray:
    return np.asarray(values, dtype=np.int64).view(np.uint64)


def _band_masks(radius: int) -> np.ndarray:
    """Every 16-bit value with at most `radius` bits set (the XOR masks a band probes)."""
    vals = np.arange(1 << 16, dtype=np.uint32)
    return vals[np.bitwise_count(vals) <= radius]


def hamming_pairs(hashes: np.ndarray, max_dist: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index pairs (a < b) of `hashes` (uint64) within Hamming distance max_dist, and their distances, by
    multi-index hashing (see the module docstring): work grows with the hashes and the matches found, not
    with all pairs."""
    n = len(hashes)
    empty = np.zeros(0, np.int64)
    if n < 2:
        return empty, empty, empty
    masks = _band_masks(max_dist // BANDS).astype(np.uint64)
    found_a, found_b = [], []
    for band in range(BANDS):
        vals = (hashes >> np.uint64(16 * band)) & np.uint64(0xFFFF)
        order = np.argsort(vals, kind="stable")
        sv = vals[order]
        for m in masks:
            q = vals ^ m
            lo = np.searchsorted(sv, q, "left")
            cnt = np.searchsorted(sv, q, "right") - lo
            total = int(cnt.sum())
            if not total:
                continue
            qi = np.repeat(np.arange(n), cnt)
            pos = lo[qi] + (np.arange(total) - np.repeat(np.cumsum(cnt) - cnt, cnt))
            ci = order[pos]
            keep = qi < ci
            found_a.append(qi[keep])
            found_b.append(ci[keep])
    if not found_a:
        return empty, empty, empty
    a, b = np.concatenate(found_a), np.concatenate(found_b)
    code = np.unique(a.astype(np.int64) * n + b)
    a, b = code // n, code % n
    d = np.bitwise_count(hashes[a] ^ hashes[b]).astype(np.int64)
    keep = d <= max_dist
    return a[keep], b[keep], d[keep]


def fingerprint_ber(x: np.ndarray, y: np.ndarray, max_offset: int, min_items: int) -> float:
    """The lowest bit error rate of two raw fingerprints over their alignments within ±max_offset items
    (1.0 when no alignment overlaps by min_items)."""
    best = 1.0
    for o in range(-max_offset, max_offset + 1):
        a, b = (x[o:], y) if o >= 0 else (x, y[-o:])
        k = min(len(a), len(b))
        if k < min_items:
            continue
        best = min(best, float(np.bitwise_count(a[:k] ^ b[:k]).sum()) / (32 * k))
    return best


def audio_pairs(fps: list[np.ndarray], cfg: Any) -> list[tuple[int, int, float]]:
    """(a < b, ber) for clips whose fingerprints match, through the inverted index of item halves."""
    owners, keys = [], []
    for i, f in enumerate(fps):
        if len(f) < int(cfg.audio_min_items):
            continue
        halves = np.concatenate([(f >> 16).astype(np.int64), (f & 0xFFFF).astype(np.int64) | (1 << 16)])
        u = np.unique(halves)
        keys.append(u)
        owners.append(np.full(len(u), i, np.int64))
    if len(keys) < 2:
        return []
    key, own = np.concatenate(keys), np.concatenate(owners)
    order = np.lexsort((own, key))
    key, own = key[order], own[order]
    # Drop keys shared by more than audio_key_cap clips: uninformative, and quadratic in their clips.
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    sizes = np.diff(np.r_[starts, len(key)])
    ok = np.repeat(sizes <= int(cfg.audio_key_cap), sizes)
    key, own = key[ok], own[ok]
    n = len(fps)
    codes = []
    for d in range(1, int(cfg.audio_key_cap)):
        if d >= len(key):
            break
        same = key[d:] == key[:-d]
        if not same.any():
            break
        codes.append(own[:-d][same] * n + own[d:][same])  # own is ascending within a key: a < b
    if not codes:
        return []
    pair, votes = np.unique(np.concatenate(codes), return_counts=True)
    out = []
    for code in pair[votes >= int(cfg.audio_min_votes)]:
        a, b = int(code // n), int(code % n)
        ber = fingerprint_ber(fps[a], fps[b], int(cfg.audio_max_offset), int(cfg.audio_min_items))
        if ber <= float(cfg.audio_max_ber):
            out.append((a, b, round(ber, 4)))
    return out


def video_pairs(frames: list[list[int]], cfg: Any) -> list[tuple[int, int, float]]:
    """(a < b, mean aligned frame distance) for videos whose aligned frames are within video_max_distance on
    average; candidates are videos with any frame within that distance (the frame pHash index)."""
    limit = int(cfg.video_max_distance)
    flat, owner = [], []
    for i, fr in enumerate(frames):
        flat += fr
        owner += [i] * len(fr)
    if not flat:
        return []
    owner_arr = np.asarray(owner)
    a, b, _ = hamming_pairs(_u64(flat), limit)
    cand = {(int(x), int(y)) for x, y in zip(owner_arr[a], owner_arr[b]) if x != y}
    out = []
    for x, y in sorted((min(p), max(p)) for p in cand):
        k = min(len(frames[x]), len(frames[y]))
        d = np.bitwise_count(_u64(frames[x][:k]) ^ _u64(frames[y][:k])).mean()
        if d <= limit:
            out.append((x, y, round(float(d), 2)))
    return sorted(set(out))


@dataclass
class Item:
    media_key: str
    source: str
    source_id: str
    modality: str
    phash: list[int] | None
    fp: list[int] | None


def items_of(table: pa.Table) -> list[Item]:
    return [Item(**r) for r in table.to_pylist()]


def near_pairs(items: list[Item], cfg: Any) -> list[tuple[int, int, str]]:
    """Every near match among `items` (indices a < b) with how it matched, for the detail."""
    out: list[tuple[int, int, str]] = []
    by = {m: [i for i, it in enumerate(items) if it.modality == m] for m in ("image", "video", "audio")}
    img = [i for i in by["image"] if items[i].phash]
    if img:
        a, b, d = hamming_pairs(_u64([items[i].phash[0] for i in img]), int(cfg.image_max_distance))
        out += [(img[x], img[y], f"pHash distance {z}") for x, y, z in zip(a.tolist(), b.tolist(), d.tolist())]
    vid = [i for i in by["video"] if items[i].phash]
    out += [(vid[x], vid[y], f"mean frame pHash distance {z}")
            for x, y, z in video_pairs([items[i].phash for i in vid], cfg)]
    aud = [i for i in by["audio"] if items[i].fp]
    out += [(aud[x], aud[y], f"fingerprint bit error rate {z}")
            for x, y, z in audio_pairs([np.asarray(items[i].fp, np.uint32) for i in aud], cfg)]
    return [(min(a, b), max(a, b), how) for a, b, how in out]


@dataclass
class EvalItem:
    item: Item
    spec: int  # index in decontaminate.media


def decide(items: list[Item], evals: list[EvalItem], mode: str, cfg: Any) -> list[dict]:
    """DEDUP_SCHEMA rows plus `detail` for every quarantined item; items in the source's order."""
    first: dict[str, int] = {}
    reps: list[int] = []
    for i, it in enumerate(items):
        if it.media_key not in first:
            first[it.media_key] = i
            reps.append(i)
    rep_items = [items[i] for i in reps]
    # Evaluation overlap: exact by key, near through the same matchers over reps + evaluation items.
    overlap: dict[int, tuple[EvalItem, str]] = {}
    if evals:
        eval_keys = {}
        for e in evals:
            eval_keys.setdefault(e.item.media_key, e)
        for r, it in enumerate(rep_items):
            if it.media_key in eval_keys:
                overlap[r] = (eval_keys[it.media_key], "same bytes")
        n = len(rep_items)
        for a, b, how in near_pairs(rep_items + [e.item for e in evals], cfg):
            if a < n <= b and a not in overlap:
                overlap[a] = (evals[b - n], how)
    # Near duplicates among reps: each rep against earlier kept reps.
    earlier: dict[int, list[tuple[int, str]]] = {}
    if mode == "near":
        for a, b, how in near_pairs(rep_items, cfg):
            earlier.setdefault(b, []).append((a, how))
    kept_of: dict[int, tuple[int, str] | None] = {}  # rep -> (kept rep, how) | None when kept itself
    rows: dict[int, dict] = {}
    for r, it in enumerate(rep_items):
        if r in overlap:
            e, how = overlap[r]
            rows[r] = _row(it, "eval_overlap", None, True,
                           f"matches evaluation item {e.item.source_id} of decontaminate.media[{e.spec}] "
                           f"(media_key {e.item.media_key}; {how})")
            kept_of[r] = None
            continue
        match = min(((a, how) for a, how in earlier.get(r, []) if a not in overlap and kept_of.get(a) is None),
                    default=None)
        kept_of[r] = match
        if match is not None:
            k = rep_items[match[0]]
            rows[r] = _row(it, "duplicate", k.media_key, True,
                           f"near copy of {k.source_id} (kept media_key {k.media_key}; {match[1]})")
    out: list[dict] = []
    rep_index = {reps[r]: r for r in range(len(reps))}
    for i, it in enumerate(items):
        if i in rep_index:
            if rep_index[i] in rows:
                out.append(rows[rep_index[i]])
            continue
        r = rep_index[first[it.media_key]]
        if r in rows and rows[r]["reason"] == "eval_overlap":
            out.append({**rows[r], "source": it.source, "source_id": it.source_id})
            continue
        kept = rep_items[kept_of[r][0]] if kept_of.get(r) else rep_items[r]
        if mode == "off":  # evaluation overlap only: byte copies stay the media table's business
            continue
        out.append(_row(it, "duplicate", kept.media_key, False if kept is rep_items[r] else True,
                        f"same bytes as {rep_items[r].source_id}, kept media_key {kept.media_key}"))
    return out


def _row(it: Item, reason: str, kept: str | None, excluded: bool, detail: str) -> dict:
    return {"media_key": it.media_key, "source": it.source, "source_id": it.source_id, "reason": reason,
            "kept": kept, "excluded": excluded, "detail": detail}


