"""Atomic, change-aware file writes for the export directory.

Every export file is written to a hidden temp name beside its target and renamed into place, so a reader
(or a crash) never sees half a file. `write_if_changed` additionally compares the new bytes with the file
that is already there and leaves an identical file alone: its mtime does not move, which is how a rerun
with identical inputs "does no new work" as far as anyone watching the directory can tell.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, BinaryIO

from acd.atomicio import tmp_path  # noqa: F401  (hidden, unique per writer: the manifest walk skips dot files)

CHUNK = 1 << 20  # 1 MiB: big enough to be fast, small enough to keep memory flat on GB-sized shards


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def same_bytes(a: Path, b: Path) -> bool:
    """True when both files exist with identical content (size first, then chunked compare)."""
    try:
        if a.stat().st_size != b.stat().st_size:
            return False
    except FileNotFoundError:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(CHUNK), fb.read(CHUNK)
            if x != y:
                return False
            if not x:
                return True


class HashingWriter:
    """A write-only file wrapper that hashes and counts what passes through (tarfile streams into it)."""

    def __init__(self, f: BinaryIO):
        self._f = f
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self._f.write(data)

    def flush(self) -> None:
        self._f.flush()


def write_via(path: Path, produce: Callable[[Path], None]) -> bool:
    """Let `produce(tmp)` write a temp file, then install it unless the target already has those bytes.

    Returns True when the target was (re)written, False when it was already identical.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(path)
    try:
        produce(tmp)
        if same_bytes(tmp, path):
            return False
        os.replace(tmp, path)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def write_if_changed(path: Path, data: bytes) -> bool:
    """Atomically write `data` to `path` unless the file already holds exactly these bytes."""
    path = Path(path)
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    return write_via(path, lambda tmp: tmp.write_bytes(data))
