"""Sources turn wherever media lives into media rows (MEDIA_SCHEMA) plus stored files, or quarantine rows.

A source is iterated in *batches* (its own unit of resume): `batches()` names them deterministically and
`read(batch, media_dir)` produces that batch's result. The ingest stage writes one Parquet part per batch,
so a rerun skips batches that are done.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Protocol

EXT_MIME = {
    "jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp",
    "mp4": "video/mp4", "webm": "video/webm", "wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg",
}


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
        from acd.atomicio import write_bytes

        write_bytes(dest, data)  # a unique temp name: two workers storing the same item never collide
    return key, rel.as_posix()


def make_source(config: dict[str, Any], seed: int) -> Source:
    """Build a source from a recipe's `source:` mapping ({kind: synthetic|folder|manifest|hf, ...})."""
    kind = config["kind"]
    if kind == "synthetic":
        from acd.sources.synthetic import SyntheticSource

        return SyntheticSource(config, seed)
    if kind == "folder":
        from acd.sources.folder import FolderSource

        return FolderSource(config, seed)
    if kind == "manifest":
        from acd.sources.manifest import ManifestSource

        return ManifestSource(config, seed)
    if kind == "hf":
        from acd.sources.hf import HFSource

        return HFSource(config, seed)
    raise ValueError(f"unknown source kind {kind!r} (synthetic, folder, manifest, hf)")


def iter_all(source: Source, media_dir: Path) -> Iterable[IngestResult]:
    for b in source.batches():
        yield source.read(b, media_dir)
