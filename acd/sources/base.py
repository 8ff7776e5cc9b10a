"""Sources turn wherever media lives into media rows (MEDIA_SCHEMA) plus stored files, or quarantine rows.

A source is iterated in *batches* (its own unit of resume): `batches()` names them deterministically and
`read(batch, media_dir)` produces that batch's result. The ingest stage writes one Parquet part per batch,
so a rerun skips batches that are done. acd.sources.factory.make_source builds a source from a recipe's
`source:` section (a module of its own, so this one never imports the sources that import it).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol


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


# kind -> the name of its section model in acd.recipe_model (made at run time; found by the module's __getattr__)
SECTION_MODELS = {"synthetic": "SyntheticSource", "folder": "FolderSource", "manifest": "ManifestSource",
                  "hf": "HFSource"}


def source_section(kind: str, config: Any) -> Any:
    """A source's typed recipe section: the model itself, or a mapping validated as it (`kind` implied, so a
    test or tool may leave it out; every other default is the model's field)."""
    from acd import recipe_model

    model = getattr(recipe_model, SECTION_MODELS[kind])
    if isinstance(config, model):
        return config
    if isinstance(config, Mapping):
        config = {"kind": kind, **config}  # a `kind` of its own wins (and a wrong one is refused)
    return recipe_model.as_section(model, config)


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
