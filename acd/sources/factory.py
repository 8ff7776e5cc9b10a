"""A source from a recipe's `source:` mapping. Its own module so that sources.base (which the sources and their
acd.sources.collector import) never imports the sources themselves."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from acd.sources.base import IngestResult, Source


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
