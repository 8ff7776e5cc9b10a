"""ingest: one unit per source batch. The source decodes (or synthesises) the batch's media into the run's
media folder; its rows go to ingest/<batch>, what it refused to quarantine/<batch> with the reason."""
from __future__ import annotations

import time

from acd.records import MEDIA_SCHEMA, QUARANTINE_SCHEMA, rows_to_table
from acd.stages.base import CPU, DRIVER, Stage, since


class Ingest(Stage):
    name, unit, task, retries = "ingest", "batch", "ingest-batch", 1
    reads, writes = ("source",), ("media", "quarantine", "ingest")

    def units(self, build, results):
        return list(build.source.batches())

    def where(self, build):
        # A Hugging Face dataset streams from one reader; the other sources read files any worker can open.
        return CPU if build.recipe.source.kind in ("synthetic", "folder", "manifest") else DRIVER

    def run(self, build, unit):
        return ingest(build, unit)


def ingest(build, batch: str) -> dict[str, int]:
    """Ingest one source batch; the media part is the batch's done-marker (written last)."""
    if build.store.has_part("ingest", batch):
        return {"media": build.store.read_part("ingest", batch).num_rows, "skipped": 1}
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    result = build.source.read(batch, build.store.media_dir)  # decode/synthesise + media file writes
    t0 = since(t, "source_read", t0)
    quarantine = rows_to_table(result.quarantine, QUARANTINE_SCHEMA)
    media = rows_to_table(result.media, MEDIA_SCHEMA)
    t0 = since(t, "to_arrow", t0)
    build.store.write_part("quarantine", batch, quarantine)
    build.store.write_part("ingest", batch, media)
    since(t, "part_write", t0)
    return {"media": len(result.media), "quarantined": len(result.quarantine), "skipped": 0, "timings": t}
