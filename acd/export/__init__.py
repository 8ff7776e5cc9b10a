"""Stage 7 (shard): accepted pairs -> the published dataset directory.

    <out>/README.md                                dataset card (acd.export.card)
    <out>/assets/*.png                             the card's plots
    <out>/pairs/<split>-NNNNN-of-NNNNN.parquet     one row per pair (acd.export.parquet_out)
    <out>/shards/<split>/<modality>-NNNNNN.tar     WebDataset, one sample per media item (acd.export.shards)
    <out>/acm/...                                  ACM training export (acd.export.acm_export)
    <out>/manifest.json                            every file with bytes + sha256, counts (acd.export.manifest)

Every file is byte-deterministic for the same inputs and replaced atomically; a file whose new bytes equal
the old ones is not touched, and a rerun with identical inputs returns from the state file without
writing anything. Output never depends on where the run directory is (media uris stay out of it).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.compute as pc

from acd.export import acm_export, card, manifest as mf, parquet_out, shards
from acd.export.fsutil import write_if_changed
from acd.export.tables import runs
from acd.paths import EXPORT_TEMPLATES_DIR
from acd.records import MEDIA_SCHEMA, PAIR_SCHEMA, conform

__all__ = ["write_outputs", "EXPORT_FORMAT"]

# Bump when any output's layout changes: part of the inputs hash, so old exports are rebuilt.
EXPORT_FORMAT = "acd-export/1"
SPLIT_RE = re.compile(r"^[a-z][a-z0-9_]*$")  # what the Hub accepts as a split name in data_files
MANAGED_DIRS = ("pairs/", "shards/", "acm/", "assets/")

Progress = Callable[[str, int, int], None]


class _HashSink:
    """File-like sink for Arrow IPC that only hashes (hashing a 300k-pair table without a copy of it)."""

    def __init__(self):
        import hashlib

        self.h = hashlib.sha256()
        self.closed = False

    def write(self, b) -> int:
        self.h.update(b)
        return len(b)

    def flush(self):
        pass

    def close(self):
        self.closed = True


def _table_digest(table: pa.Table) -> bytes:
    sink = _HashSink()
    with pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), table.schema) as w:
        w.write_table(table, max_chunksize=65536)
    return sink.h.digest()


def _identity(written: dict) -> dict:
    from acd.recipe import identity

    return identity(written)


def _inputs_hash(pairs: pa.Table, media: pa.Table, recipe, stats: dict | None) -> str:
    # The recipe as written (its defaults are the code's, which the format versions and templates cover):
    # a dataset exported before typed recipes is not rewritten for it.
    template_bytes = b"".join(p.read_bytes() for p in sorted(EXPORT_TEMPLATES_DIR.iterdir())
                              if p.is_file())
    # The card quotes the checks' measured rates and whether they are stale (the checks' fingerprint): a
    # re-measure or a check edit must rewrite it, however unchanged the pairs are.
    from acd.checks.measured import BENCH_FILE, REFERENCE_FILE, checks_fingerprint

    measured = b"".join(f.read_bytes() for f in (BENCH_FILE, REFERENCE_FILE) if f.exists())
    return mf.hash_parts(
        EXPORT_FORMAT.encode(), shards.TAR_FORMAT_VERSION.encode(), template_bytes,
        measured, checks_fingerprint().encode(),
        json.dumps(_identity(recipe.written), sort_keys=True, default=str).encode(),  # a budget is not an input
        json.dumps(stats or {}, sort_keys=True, default=str).encode(),
        _table_digest(pairs), _table_digest(media.drop_columns(["uri"])),
    )


def _prepare(pairs: pa.Table, media: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Conform, validate and sort: pairs by (split, modality, media_key, pair_id); media by (modality, key)."""
    pairs = conform(pairs, PAIR_SCHEMA)
    media = conform(media, MEDIA_SCHEMA)
    if pairs.num_rows == 0:
        from acd.errors import NothingToExport

        raise NothingToExport("no accepted pairs to export (an empty dataset would not load)")
    for col in ("instruction", "chosen", "rejected"):
        if pairs.column(col).null_count:
            raise ValueError(f"pairs: column {col!r} has nulls; only finished, accepted pairs can be exported")
    bad_splits = sorted({s for s in pc.unique(pairs.column("split")).to_pylist() if not SPLIT_RE.match(s)})
    if bad_splits:
        raise ValueError(f"pairs: split names {bad_splits} are not valid dataset split names")
    if pc.count_distinct(pairs.column("pair_id")).as_py() != pairs.num_rows:
        raise ValueError("pairs: pair_id is not unique")
    media = media.take(pc.sort_indices(media, [("modality", "ascending"), ("media_key", "ascending")]))
    # One row per media_key (the key is the content hash; duplicates from re-ingest are the same bytes).
    keys = media.column("media_key").to_pylist()
    keep = [i for i in range(len(keys)) if i == 0 or keys[i] != keys[i - 1]]
    media = media.take(pa.array(keep, pa.int64()))
    used = pc.unique(pairs.column("media_key"))
    missing = pc.filter(used, pc.invert(pc.is_in(used, media.column("media_key"))))
    if len(missing):
        raise ValueError(f"pairs reference {len(missing)} media_key(s) with no media row, e.g. {missing[0].as_py()}")
    media = media.filter(pc.is_in(media.column("media_key"), used))
    # Fail before writing anything (not halfway through the shards) when a pair and its media disagree.
    j = pairs.select(["media_key", "modality"]).join(
        media.select(["media_key", "modality"]).rename_columns(["media_key", "media_modality"]), "media_key")
    bad = j.filter(pc.not_equal(j.column("modality"), j.column("media_modality")))
    if bad.num_rows:
        r = bad.slice(0, 1).to_pylist()[0]
        raise ValueError(f"media {r['media_key']} is {r['media_modality']!r} but its pairs say {r['modality']!r}")
    order = [("split", "ascending"), ("modality", "ascending"), ("media_key", "ascending"), ("pair_id", "ascending")]
    pairs = pairs.take(pc.sort_indices(pairs, order)).combine_chunks()
    return pairs, media.combine_chunks()


def _counts(pairs: pa.Table, media: pa.Table, shard_info: dict[str, dict], acm_counts: dict) -> dict[str, Any]:
    rows = pairs.select(["split", "modality", "instruction_type", "is_qcc"]).group_by(
        ["split", "modality", "instruction_type", "is_qcc"]).aggregate([([], "count_all")]).to_pylist()
    nested: dict[str, dict[str, dict[str, int]]] = {}
    by_split: dict[str, int] = {}
    by_mod: dict[str, int] = {}
    qcc = 0
    for r in rows:
        n = r["count_all"]
        d = nested.setdefault(r["split"], {}).setdefault(r["modality"], {})
        d[r["instruction_type"]] = d.get(r["instruction_type"], 0) + n
        by_split[r["split"]] = by_split.get(r["split"], 0) + n
        by_mod[r["modality"]] = by_mod.get(r["modality"], 0) + n
        qcc += n if r["is_qcc"] else 0
    shards_n: dict[str, dict[str, int]] = {}
    samples: dict[str, int] = {}
    for info in shard_info.values():
        d = shards_n.setdefault(info["split"], {})
        d[info["modality"]] = d.get(info["modality"], 0) + 1
        samples[info["split"]] = samples.get(info["split"], 0) + info["items"]
    media_by_mod = {r["modality"]: r["count_all"] for r in
                    media.group_by(["modality"]).aggregate([([], "count_all")]).to_pylist()}
    return {
        "pairs": pairs.num_rows,
        "pairs_by_split": by_split,
        "pairs_by_modality": by_mod,
        "pairs_by_split_modality_type": nested,
        "qcc_pairs": qcc,
        "media_items": media.num_rows,
        "media_by_modality": media_by_mod,
        "shard_samples_by_split": samples,
        "shards": shards_n,
        "acm_lines": acm_counts,
    }


def _remove_stale(out_dir: Path, produced: set[str]) -> None:
    """Drop files a previous export left in our directories that this one did not produce (e.g. a shard
    index that no longer exists), so globs like pairs/train-*.parquet never pick up leftovers."""
    for rel in mf.walk(out_dir):
        if rel.startswith(MANAGED_DIRS) and rel not in produced:
            (out_dir / rel).unlink()


def write_outputs(pairs: pa.Table, media: pa.Table, run_dir: Path, out_dir: Path, recipe,
                  stats: dict | None = None, progress: Progress | None = None) -> dict:
    """Export accepted pairs (PAIR_SCHEMA) and their media (MEDIA_SCHEMA, uri relative to run_dir) to
    out_dir; return the manifest dict (also written to out_dir/manifest.json).

    progress(stage, done, total) is called with stage in: pairs, shards, acm, card, manifest, up-to-date.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    pairs, media = _prepare(pairs, media)  # validates everything before the first byte is written
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs_hash = _inputs_hash(pairs, media, recipe, stats)
    state = mf.load_state(out_dir)
    if state.get("inputs_sha256") == inputs_hash and mf.files_unchanged(out_dir, state.get("check", {})):
        if progress:
            progress("up-to-date", 1, 1)
        return json.loads((out_dir / mf.MANIFEST).read_text())

    by_split = {s: pairs.slice(off, n) for s, off, n in runs(pairs, "split")}  # sorted by split first
    media_by_key = {r["media_key"]: r for r in media.to_pylist()}

    produced = set(parquet_out.write_pairs(
        by_split, out_dir, recipe.export.rows_per_file, progress))
    shard_info = shards.write_shards(by_split, media_by_key, out_dir, run_dir, recipe.shards.target_bytes,
                                     state.get("shards", {}), progress)
    produced |= set(shard_info)
    acm = acm_export.write_acm(by_split, media_by_key, out_dir,
                               tuple(recipe.export.acm_splits), progress)
    produced |= set(acm["files"])
    summary = card.summarize(pairs, media, stats, shard_info, acm["counts"])
    produced |= set(card.write_card(summary, recipe, out_dir))
    if progress:
        progress("card", 1, 1)
    _remove_stale(out_dir, produced)

    rels = mf.walk(out_dir)
    cache = {**state.get("check", {}), **shard_info}
    entries = {}
    for i, rel in enumerate(rels):
        entries.update(mf.file_entries(out_dir, [rel], cache))
        if progress:
            progress("manifest", i + 1, len(rels))
    manifest = mf.build_manifest(entries, _counts(pairs, media, shard_info, acm["counts"]), inputs_hash,
                                 name=recipe.name)
    write_if_changed(out_dir / mf.MANIFEST, mf.manifest_bytes(manifest))
    check = dict(entries)
    st = (out_dir / mf.MANIFEST).stat()
    check[mf.MANIFEST] = {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": None}
    mf.save_state(out_dir, {
        "inputs_sha256": inputs_hash,
        "check": check,
        "shards": {k: {kk: v[kk] for kk in ("fingerprint", "sha256", "bytes", "mtime_ns")} for k, v in shard_info.items()},
    })
    return json.loads(mf.manifest_bytes(manifest))
