"""One input -> one media row or one quarantine row; a batch collector that dedups by media_key.

Every source funnels its inputs through `Collector.add`, which turns any ProbeError (and, as a last line of
defence, any other exception) into a quarantine row, so a bad input never stops a batch and nothing is lost.
(It was acd.media.item's; it builds the sources' IngestResult, so it lives with the sources and media stays
below them.)
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from acd.media.errors import ProbeError
from acd.media.image import Probed
from acd.media.safety import printable
from acd.sources.base import IngestResult, store_media

FACT_FIELDS = ("width", "height", "duration_s", "fps", "num_frames", "sample_rate", "channels",
               "source_duration_s", "checked_frames")


class Collector:
    """Accumulates one batch's IngestResult; the first item with a given media_key wins, later ones are
    quarantined as `duplicate` (so inputs == media rows + quarantine rows always holds).

    Every text it writes goes through `printable`: a name that is not UTF-8 (bytes on disk) is still a row,
    with its bytes shown escaped, instead of an Arrow encode error that would lose the whole batch.
    """

    def __init__(self, source: str, media_dir: Path):
        self.source, self.media_dir = source, Path(media_dir)
        self.result = IngestResult()
        self._seen: dict[str, str] = {}

    def bad(self, source_id: str, reason: str, detail: str = "") -> None:
        self.result.quarantine.append({"source": self.source, "source_id": printable(source_id), "stage": "ingest",
                                       "reason": reason, "detail": printable(detail)})

    def add(self, source_id: str, produce: Callable[[], Probed], licence: str | None = None,
            existing_captions: list[str] | None = None) -> None:
        try:
            probed = produce()
        except ProbeError as exc:
            return self.bad(source_id, exc.reason, exc.detail)
        except Exception as exc:  # a probe bug must not stop the run; the fuzz tests keep this path empty
            return self.bad(source_id, "internal_error", f"{type(exc).__name__}: {exc}")
        source_id, licence = printable(source_id), printable(licence) if licence else licence
        if existing_captions:
            existing_captions = [printable(c) for c in existing_captions]
        key, uri = store_media(probed.data, probed.ext, self.media_dir)
        if key in self._seen:
            return self.bad(source_id, "duplicate", f"same bytes as {self._seen[key]} (media_key {key})")
        self._seen[key] = source_id
        row: dict[str, Any] = {
            "media_key": key, "modality": probed.modality, "source": self.source, "source_id": source_id,
            "uri": uri, "ext": probed.ext, "mime": probed.mime, "bytes": len(probed.data),
            "licence": licence, "grounding": None,  # real media: no ground truth; instructions come from a model
            "existing_captions": json.dumps(existing_captions, ensure_ascii=False) if existing_captions else None,
        }
        for f in FACT_FIELDS:
            row[f] = probed.facts.get(f)
        self.result.media.append(row)
