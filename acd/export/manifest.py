"""manifest.json (every published file with bytes and sha256, plus counts) and the export state file.

manifest.json is canonical JSON (sorted keys, fixed separators), so equal inputs give equal bytes.

<out>/.build-inputs is ours, not the consumer's (hidden, left out of the manifest and the Hub upload): it
holds the hash of everything the export depends on, each file's sha256 with the size and mtime it had
when hashed, and each shard's content fingerprint. A rerun with the same inputs hash whose files are all
still as recorded returns at once; otherwise hashes are reused for files whose size and mtime did not
change, so a rerun never re-reads gigabytes of untouched shards.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from acd.export.fsutil import sha256_file, write_if_changed
from acd.records import dumps

STATE_FILE = ".build-inputs"
MANIFEST = "manifest.json"
# Not part of the published dataset: our state, and media a consumer unpacked for ACM training.
# acm/media/ is extracted on demand; report.html is the run report (wall times: differs run to run by nature).
EXCLUDED_PREFIXES = ("acm/media/", "report.html")


def is_published(rel: str) -> bool:
    if rel in (MANIFEST, STATE_FILE):
        return False
    if any(part.startswith(".") for part in rel.split("/")):
        return False  # temp files and other hidden things
    return not rel.startswith(EXCLUDED_PREFIXES)


def walk(out_dir: Path) -> list[str]:
    rels = []
    for root, dirs, files in os.walk(out_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in files:
            rel = (Path(root) / f).relative_to(out_dir).as_posix()
            if is_published(rel):
                rels.append(rel)
    return sorted(rels)


def load_state(out_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((out_dir / STATE_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def save_state(out_dir: Path, state: dict[str, Any]) -> None:
    write_if_changed(out_dir / STATE_FILE, (dumps(state) + "\n").encode("utf-8"))


def file_entries(out_dir: Path, rels: list[str], cache: dict[str, dict]) -> dict[str, dict]:
    """{rel: {"bytes", "sha256", "mtime_ns"}}; sha256 reused from `cache` when size and mtime match."""
    out = {}
    for rel in rels:
        st = (out_dir / rel).stat()
        c = cache.get(rel)
        if c and c.get("bytes") == st.st_size and c.get("mtime_ns") == st.st_mtime_ns and c.get("sha256"):
            sha = c["sha256"]
        else:
            sha = sha256_file(out_dir / rel)
        out[rel] = {"bytes": st.st_size, "sha256": sha, "mtime_ns": st.st_mtime_ns}
    return out


def files_unchanged(out_dir: Path, entries: dict[str, dict]) -> bool:
    for rel, e in entries.items():
        try:
            st = (out_dir / rel).stat()
        except FileNotFoundError:
            return False
        if st.st_size != e.get("bytes") or st.st_mtime_ns != e.get("mtime_ns"):
            return False
    return (out_dir / MANIFEST).exists()


def build_manifest(entries: dict[str, dict], counts: dict[str, Any], inputs_hash: str,
                   name: str | None = None) -> dict[str, Any]:
    """`name`: the dataset's own name (its recipe's), which downstream runs are named after."""
    files = [{"path": rel, "bytes": e["bytes"], "sha256": e["sha256"]} for rel, e in sorted(entries.items())]
    return {
        **({"name": name} if name else {}),
        "format": "acd-export/1",
        "inputs_sha256": inputs_hash,
        "files": files,
        "total_bytes": sum(f["bytes"] for f in files),
        "counts": counts,
    }


def dataset_name(out_dir: str | Path) -> str:
    """A built dataset's own name (manifest.json's, i.e. its recipe's); the folder's name for older builds."""
    out_dir = Path(out_dir).resolve()
    try:
        name = json.loads((out_dir / MANIFEST).read_text()).get("name")
    except (FileNotFoundError, ValueError):
        name = None
    return name or out_dir.name


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    # Canonical but still readable in a diff: sorted keys, one entry per line.
    return (json.dumps(manifest, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def verify(out_dir: str | Path) -> list[str]:
    """Re-hash every file listed in manifest.json; return the problems (empty when all match)."""
    out_dir = Path(out_dir)
    m = json.loads((out_dir / MANIFEST).read_text())
    problems = []
    for f in m["files"]:
        p = out_dir / f["path"]
        if not p.exists():
            problems.append(f"missing: {f['path']}")
        elif p.stat().st_size != f["bytes"] or sha256_file(p) != f["sha256"]:
            problems.append(f"changed: {f['path']}")
    listed = {f["path"] for f in m["files"]}
    problems += [f"unlisted: {rel}" for rel in walk(out_dir) if rel not in listed]
    return problems


def hash_parts(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()
