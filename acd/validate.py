"""Validate a built dataset against the contracts: files, checksums, schema and pair invariants."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pyarrow.dataset as ds

from acd.checks.length import satisfies
from acd.records import PAIR_SCHEMA
from acd.taxonomy import LengthConstraint


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def unlisted_files(out: Path, listed: set[str]) -> list[str]:
    """Files in the dataset directory the manifest does not list, hidden ones included (a half-written
    `.audio-000000.tar.<pid>.tmp` is debris a consumer downloads too). Not counted: the manifest itself,
    the builder's state file, the run report and media unpacked for ACM training (manifest.is_published)."""
    from acd.export.manifest import EXCLUDED_PREFIXES, MANIFEST, STATE_FILE

    extra = []
    for root, dirs, files in os.walk(out):
        dirs.sort()
        for name in sorted(files):
            rel = (Path(root) / name).relative_to(out).as_posix()
            if rel in (MANIFEST, STATE_FILE) or rel.startswith(EXCLUDED_PREFIXES) or rel in listed:
                continue
            extra.append(rel)
    return extra


def validate_dataset(path: str | Path) -> list[str]:
    out = Path(path)
    problems: list[str] = []
    manifest_path = out / "manifest.json"
    if not manifest_path.exists():
        return [f"{manifest_path} is missing"]
    manifest = json.loads(manifest_path.read_text())
    for entry in manifest.get("files", []):
        f = out / entry["path"]
        if not f.exists():
            problems.append(f"{entry['path']}: listed in manifest but missing")
        elif _sha256(f) != entry["sha256"]:
            problems.append(f"{entry['path']}: sha256 differs from manifest")
    for rel in unlisted_files(out, {e["path"] for e in manifest.get("files", [])}):
        problems.append(f"{rel}: not listed in the manifest (debris, e.g. a killed writer's temp file?)")
    if not (out / "README.md").exists():
        problems.append("README.md (dataset card) is missing")

    table = ds.dataset(str(out / "pairs"), format="parquet").to_table()
    missing = set(PAIR_SCHEMA.names) - set(table.column_names)
    if missing:
        problems.append(f"pairs: missing columns {sorted(missing)}")
        return problems
    seen = set()
    for row in table.select(["pair_id", "length_key", "chosen", "rejected", "is_qcc"]).to_pylist():
        if row["pair_id"] in seen:
            problems.append(f"pair {row['pair_id']}: duplicated")
        seen.add(row["pair_id"])
        if not satisfies(row["chosen"], LengthConstraint.from_key(row["length_key"])):
            problems.append(f"pair {row['pair_id']}: chosen violates its length constraint {row['length_key']}")
        if not row["is_qcc"] and row["chosen"].strip() == row["rejected"].strip():
            problems.append(f"pair {row['pair_id']}: chosen == rejected outside q-c-c")
        if row["is_qcc"] and row["chosen"] != row["rejected"]:
            problems.append(f"pair {row['pair_id']}: q-c-c pair with rejected != chosen")
    return problems
