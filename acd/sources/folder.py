"""Folder source: every media file under a root, in sorted order, batched.

Config (recipe `source:`, the FolderSource model; defaults are its fields):
    kind: folder
    root: path                     # the tree to ingest; nothing outside it is ever opened
    recursive: true                # walk subfolders
    batch_size: 256                # files per batch (one Parquet part each)
    include: ["**/*.jpg", ...]     # optional fnmatch globs on the path relative to root
    exclude: [...]                 # optional globs to skip
    licence: cc-by-4.0             # optional, written to every row
    on_wrong_extension: quarantine # or `accept`: ingest by the sniffed type instead
    limits: {...}                  # overrides of schemas/ingest.yaml

Which files are inputs: media extensions (acd.media.sniff.EXTENSIONS; UNSUPPORTED_EXT ones end as
unsupported_type rows), plus files with any other name whose
first bytes are media (those are quarantined as wrong_extension, or accepted by their bytes). Hidden files
and other non-media files are not inputs. Symlinks are resolved before anything is opened: out of the root
-> escapes_root; directory links inside the root are skipped (their files are reached by their real path).
"""
from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import Any

from acd.media.errors import ProbeError
from acd.media.item import probe_bytes, read_file
from acd.media.safety import read_head, resolve_inside
from acd.media.sniff import EXTENSIONS, UNSUPPORTED_EXT, ext_of, sniff
from acd.sources.base import IngestResult, source_section
from acd.sources.collector import Collector

ESCAPE = "escape"  # candidate kind for a directory link out of the root (reported, never walked)


class FolderSource:
    name = "folder"

    def __init__(self, config: Any, seed: int = 0):
        """`config`: the recipe's FolderSource section (acd.recipe_model), or a mapping of one."""
        config = source_section("folder", config)
        self.root = Path(os.path.expanduser(config.root))
        if not self.root.is_dir():
            raise ValueError(f"folder source: root {self.root} is not a directory")
        self.recursive = config.recursive
        self.batch_size = config.batch_size
        self.include = list(config.include)
        self.exclude = list(config.exclude)
        self.licence = config.licence
        self.trust_sniffed = config.on_wrong_extension == "accept"
        self.limits = config.limits
        self._candidates: list[tuple[str, str]] | None = None

    # -- what the inputs are ------------------------------------------------------------------------------
    def _selected(self, rel: str) -> bool:
        if self.include and not any(fnmatch.fnmatch(rel, g) or fnmatch.fnmatch(os.path.basename(rel), g) for g in self.include):
            return False
        return not any(fnmatch.fnmatch(rel, g) for g in self.exclude)

    def _is_media_without_media_name(self, path: Path) -> bool:
        """A non-media name: an input only if its bytes are media. Out-of-root links are inputs (escapes_root)."""
        try:
            real = resolve_inside(self.root, path)
        except ProbeError:
            return True
        return sniff(read_head(real)) is not None

    def candidates(self) -> list[tuple[str, str]]:
        """Sorted (path relative to root, kind) of every input; kind is "file" or ESCAPE."""
        if self._candidates is not None:
            return self._candidates
        out: list[tuple[str, str]] = []
        root_real = Path(os.path.realpath(self.root))
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            base = Path(dirpath)
            keep = []
            for d in sorted(dirnames):
                if d.startswith("."):
                    continue
                full = base / d
                if full.is_symlink():
                    real = Path(os.path.realpath(full))
                    rel_d = full.relative_to(self.root).as_posix()
                    excluded = any(fnmatch.fnmatch(rel_d, g) for g in self.exclude)
                    if self.recursive and not excluded and not real.is_relative_to(root_real):
                        out.append((rel_d, ESCAPE))
                    continue  # inside-root dir links: skipped (no cycles, no second copy)
                keep.append(d)
            dirnames[:] = keep if self.recursive else []
            for f in sorted(filenames):
                if f.startswith("."):
                    continue
                full = base / f
                rel = full.relative_to(self.root).as_posix()
                if not self._selected(rel):
                    continue
                ext = ext_of(f)
                if ext in EXTENSIONS or ext in UNSUPPORTED_EXT or self._is_media_without_media_name(full):
                    out.append((rel, "file"))
        self._candidates = sorted(out)
        return self._candidates

    # -- Source protocol -----------------------------------------------------------------------------------
    def batches(self) -> list[str]:
        n = len(self.candidates())
        return [f"files-{i:04d}" for i in range((n + self.batch_size - 1) // self.batch_size)]

    def read(self, batch: str, media_dir: Path) -> IngestResult:
        i = int(batch.rsplit("-", 1)[1])
        col = Collector(self.name, media_dir)
        for rel, kind in self.candidates()[i * self.batch_size:(i + 1) * self.batch_size]:
            if kind == ESCAPE:
                col.bad(rel, "escapes_root", "directory link resolves outside the source root (not walked)")
                continue
            col.add(rel, lambda rel=rel: self._probe(rel), licence=self.licence)
        return col.result

    def _probe(self, rel: str):
        real = resolve_inside(self.root, rel)  # raises escapes_root before any open
        data = read_file(real, ext_of(rel), self.limits, self.trust_sniffed)
        return probe_bytes(data, ext_of(rel), self.limits, trust_sniffed=self.trust_sniffed)

