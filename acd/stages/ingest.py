"""ingest: one unit per source batch. The source decodes (or synthesises) the batch's media into the run's
media folder; its rows go to ingest/<batch>, what it refused to quarantine/<batch> with the reason. When the
build deduplicates (acd.dedup.wanted), the batch's hashes go to media_hashes/<batch> first: computed here,
where the files were just written, so the dedup stage only matches."""
from __future__ import annotations

import time

from acd.records import MEDIA_SCHEMA, QUARANTINE_SCHEMA, rows_to_table
from acd.stages.base import CPU, DRIVER, Stage, since


class Ingest(Stage):
    name, unit, task, retries = "ingest", "batch", "ingest-batch", 1
    reads, writes = ("source",), ("media", "quarantine", "media_hashes", "ingest")

    def units(self, build, results):
        return list(build.source.batches())

    def where(self, build):
        # A Hugging Face dataset streams from one reader; the other sources read files any worker can open.
        return CPU if build.recipe.source.kind in ("synthetic", "folder", "manifest") else DRIVER

    def run(self, build, unit):
        return ingest(build, unit)


def ingest(build, batch: str) -> dict[str, int]:
    """Ingest one source batch; the media part is the batch's done-marker (written last)."""
    from acd import dedup

    hashes = dedup.wanted(build.recipe)
    if build.store.has_part("ingest", batch):
        media = build.store.read_part("ingest", batch)
        if hashes and not build.store.has_part("media_hashes", batch):  # a run ingested before hashes existed
            _write_hashes(build, batch, media.to_pylist())
        return {"media": media.num_rows, "skipped": 1}
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    result = build.source.read(batch, build.store.media_dir)  # decode/synthesise + media file writes
    t0 = since(t, "source_read", t0)
    quarantine = rows_to_table(result.quarantine, QUARANTINE_SCHEMA)
    media = rows_to_table(result.media, MEDIA_SCHEMA)
    t0 = since(t, "to_arrow", t0)
    build.store.write_part("quarantine", batch, quarantine)
    if hashes:
        t0 = since(t, "part_write", t0)
        _write_hashes(build, batch, result.media)
        t0 = since(t, "media_hashes", t0)
    build.store.write_part("ingest", batch, media)
    since(t, "part_write", t0)
    return {"media": len(result.media), "quarantined": len(result.quarantine), "skipped": 0, "timings": t}


def _write_hashes(build, batch: str, rows: list[dict]) -> None:
    from acd import dedup

    limits = dedup.source_limits(build.recipe.source)
    build.store.write_part("media_hashes", batch,
                           dedup.hash_rows(rows, build.run_dir, limits, dedup.perceptual(build.recipe, build.source)))
