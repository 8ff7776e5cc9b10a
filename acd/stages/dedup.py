"""dedup: once, between ingest and plan. Matches the hashes ingest computed (media_hashes/<batch>) in the
source's order, and against the evaluation media (decontaminate.media, read into <run>/eval_media/<k>/ by
the same source classes and hashed the same way); acd.dedup says how. Writes the quarantine rows
(quarantine/dedup: stage dedup, reason duplicate | eval_overlap) and then dedup/all (what plan's media table
leaves out; the stage's done-marker)."""
from __future__ import annotations

import time

import pyarrow as pa

from acd.records import QUARANTINE_SCHEMA, rows_to_table
from acd.runstore import DEDUP_DONE
from acd.stages.base import Stage, since

EVAL_DIR = "eval_media"


class Dedup(Stage):
    name, task = "dedup", "dedup"
    reads, writes = ("media_hashes", "decontaminate.media"), ("quarantine", "dedup")

    def active(self, build) -> bool:
        from acd import dedup

        return dedup.wanted(build.recipe)

    def run_once(self, build, progress=None):
        return run_dedup(build)


def run_dedup(build) -> dict:
    from acd import dedup

    if build.store.has_part(*DEDUP_DONE):
        table = build.store.read_part(*DEDUP_DONE)
        return {**_counts(table.column("reason").to_pylist()), "skipped": 1}
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    parts = [build.store.read_part("media_hashes", b) for b in build.source.batches()
             if build.store.has_part("media_hashes", b)]
    items = dedup.items_of(pa.concat_tables(parts)) if parts else []
    t0 = since(t, "read_hashes", t0)
    evals = eval_items(build)
    t0 = since(t, "eval_media", t0)
    cfg = dedup.thresholds(dedup.source_limits(build.recipe.source))
    rows = dedup.decide(items, evals, dedup.near_mode(build.recipe, build.source), cfg)
    t0 = since(t, "match", t0)
    build.store.write_part("quarantine", "dedup", rows_to_table(
        [{**r, "stage": "dedup"} for r in rows], QUARANTINE_SCHEMA))
    build.store.write_part(*DEDUP_DONE, rows_to_table(rows, dedup.DEDUP_SCHEMA))
    since(t, "part_write", t0)
    return {**_counts([r["reason"] for r in rows]), "items": len(items), "eval_items": len(evals), "timings": t}


def _counts(reasons: list[str]) -> dict[str, int]:
    return {r: reasons.count(r) for r in sorted(set(reasons))}


def eval_items(build) -> list:
    """The evaluation media of decontaminate.media, ingested by their own source classes (their limits and
    normalisation, so the stored bytes compare with the source's) under <run>/eval_media/<k>/, hashed."""
    from acd import dedup
    from acd.sources.factory import make_source

    out = []
    for k, section in enumerate(build.recipe.decontaminate.media):
        root = build.run_dir / EVAL_DIR / str(k)
        src = make_source(section, build.recipe.seed)
        limits = dedup.source_limits(section)
        for batch in src.batches():
            result = src.read(batch, root / "media")
            table = dedup.hash_rows(result.media, root, limits, near=True)
            out += [dedup.EvalItem(it, k) for it in dedup.items_of(table)]
    return out
