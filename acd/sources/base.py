"""Sources turn wherever media lives into media rows (MEDIA_SCHEMA) plus stored files, or quarantine rows.

A source is iterated in *batches* (its own unit of resume): `batches()` names them deterministically and
`read(batch, media_dir)` produces that batch's result. The ingest stage writes one Parquet part per batch,
so a rerun skips batches that are done. acd.sources.factory.make_source builds a source from a recipe's
`source:` mapping (a module of its own, so this one never imports the sources that import it).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass
class IngestResult:
    media: list[dict[str, Any]] = field(default_factory=list)  # MEDIA_SCHEMA rows
    quarantine: list[dict[str, Any]] = field(default_factory=list)  # QUARANTINE_SCHEMA rows


class Source(Protocol):
    name: str

    def batches(self) -> list[str]:
        """Deterministic batch names, e.g. ["image-0000", "image-0001", "video-0000", ...]."""
        ...

    def read(self, batch: str, media_dir: Path) -> IngestResult:
        """Produce one batch: store each good item's bytes under media_dir via store_media()."""
        ...


def media_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def store_media(data: bytes, ext: str, media_dir: Path) -> tuple[str, str]:
    """Write media bytes content-addressed (media/<k[:2]>/<k>.<ext>), atomically; return (key, relative uri).

    The uri is relative to the run directory (media_dir's parent), so the run can move.
    """
    key = media_key(data)
    rel = Path("media") / key[:2] / f"{key}.{ext}"
    dest = media_dir.parent / rel
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(dest)
    return key, rel.as_posix()
