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

Streaming (issue 24): no step holds every accepted pair. The inputs are DuckDB views (acd.export.source),
sorted once into temp Parquet under a DuckDB memory limit and read back in bounded batches; counts and
the card's statistics are DuckDB queries. The bytes are those of the in-memory export this replaced,
except the manifest's inputs hash above IPC_CHUNK pairs (`_stream_digest`: now defined by the rows alone).
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

import pyarrow as pa
import pyarrow.compute as pc

from acd.export import acm_export, card, manifest as mf, parquet_out, shards, source
from acd.export.fsutil import write_if_changed
from acd.paths import EXPORT_TEMPLATES_DIR
from acd.records import MEDIA_SCHEMA, PAIR_SCHEMA

__all__ = ["write_outputs", "write_outputs_sql", "EXPORT_FORMAT"]

# Bump when any output's layout changes: part of the inputs hash, so old exports are rebuilt.
EXPORT_FORMAT = "acd-export/1"
SPLIT_RE = source.SPLIT_RE
MANAGED_DIRS = ("pairs/", "shards/", "acm/", "assets/")
IPC_CHUNK = 65536  # record batch size of the hashed Arrow IPC stream (part of the inputs hash: fixed)

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


def _zero_nulls(arr: pa.Array) -> pa.Array:
    """The same array with nothing under its nulls: zeros in a fixed-width column's slots, empty strings and
    lists in a variable-length one's. IPC sends a null's slot as it lies (fixed-width values, the bytes a
    null string's offsets span), and what lies there depends on the reader (DuckDB's Arrow output has zeros
    and empty slots, pyarrow's Parquet reader may leave whatever the memory held): hash nothing, so the
    digest is the same as it was over DuckDB's tables, and the same from run to run. fill_null builds
    fresh, compact buffers (unlike if_else, which keeps a null string's bytes: measured, pyarrow 26)."""
    if not arr.null_count:
        return arr
    t = arr.type
    if pa.types.is_primitive(t):
        empty = pa.scalar(False if pa.types.is_boolean(t) else 0, t)
    elif pa.types.is_string(t) or pa.types.is_list(t):
        empty = pa.scalar("" if pa.types.is_string(t) else [], t)
    else:
        raise TypeError(f"no empty value for {t}")  # the hashed schemas have none other
    filled = pc.fill_null(arr, empty)
    validity = pc.is_valid(arr).buffers()[1]  # a fresh bitmap at offset 0, like `filled`
    children = [filled.values] if pa.types.is_list(t) else None
    return pa.Array.from_buffers(t, len(arr), [validity, *filled.buffers()[1:3 if children is None else 2]],
                                 arr.null_count, children=children)


def _compact(pieces: list[pa.Array]) -> pa.Array:
    """One column of one hashed batch: its pieces copied into fresh buffers at offset 0 that hold these rows'
    bytes and nothing else. Arrow's IPC writer sends more of a sliced array's buffers than its rows (string
    padding from the rows after it, whole bitmaps for a slice at offset 0), so hashing slices would make the
    digest depend on how the rows arrived; a compact copy does not. concat_arrays copies even a single piece
    (pyarrow 26; tests/test_export.py checks the digest over pieces that are slices of bigger tables)."""
    return _zero_nulls(pa.concat_arrays(pieces))


def _stream_digest(tables: Iterable[pa.Table], schema: pa.Schema) -> bytes:
    """sha256 of the Arrow IPC stream (`schema`) of the rows of `tables`, in consecutive record batches of
    IPC_CHUNK rows (the last shorter), each batch compact (`_compact`). Defined by the rows alone, not by
    how they arrive; up to IPC_CHUNK rows it is the digest of the whole table written at once, as it was
    before the export streamed (so such builds keep their inputs hash)."""
    sink = _HashSink()
    with pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), schema) as w:
        for chunk in source.cut(tables, IPC_CHUNK):
            parts = [t.select(schema.names) for t in chunk]  # cut yields no empty chunk
            cols = [_compact([a for t in parts for a in t.column(f.name).chunks]) for f in schema]
            w.write_batch(pa.RecordBatch.from_arrays(cols, schema=schema))
    return sink.h.digest()


def _identity(written: dict) -> dict:
    from acd.recipe import identity

    return identity(written)


def _inputs_hash(src: source.Sorted, recipe, stats: dict | None) -> str:
    # The recipe as written (its defaults are the code's, which the format versions and templates cover):
    # a dataset exported before typed recipes is not rewritten for it.
    template_bytes = b"".join(p.read_bytes() for p in sorted(EXPORT_TEMPLATES_DIR.iterdir())
                              if p.is_file())
    # The card quotes the checks' measured rates and whether they are stale (the checks' fingerprint): a
    # re-measure or a check edit must rewrite it, however unchanged the pairs are.
    from acd.checks.measured import BENCH_FILE, REFERENCE_FILE, checks_fingerprint

    measured = b"".join(f.read_bytes() for f in (BENCH_FILE, REFERENCE_FILE) if f.exists())
    media_cols = [n for n in MEDIA_SCHEMA.names if n != "uri"]
    return mf.hash_parts(
        EXPORT_FORMAT.encode(), shards.TAR_FORMAT_VERSION.encode(), template_bytes,
        measured, checks_fingerprint().encode(),
        json.dumps(_identity(recipe.written), sort_keys=True, default=str).encode(),  # a budget is not an input
        json.dumps(stats or {}, sort_keys=True, default=str).encode(),
        _stream_digest(source.scan(src), PAIR_SCHEMA),
        _stream_digest(source.scan(src, "media"), pa.schema([MEDIA_SCHEMA.field(n) for n in media_cols])),
    )


def _counts(con, shard_info: dict[str, dict], acm_counts: dict) -> dict[str, Any]:
    rows = con.execute("select split, modality, instruction_type, is_qcc, count(*) from pairs_s "
                   "group by all order by all").fetchall()
    nested: dict[str, dict[str, dict[str, int]]] = {}
    by_split: dict[str, int] = {}
    by_mod: dict[str, int] = {}
    qcc = 0
    for split, modality, itype, is_qcc, n in rows:
        d = nested.setdefault(split, {}).setdefault(modality, {})
        d[itype] = d.get(itype, 0) + n
        by_split[split] = by_split.get(split, 0) + n
        by_mod[modality] = by_mod.get(modality, 0) + n
        qcc += n if is_qcc else 0
    shards_n: dict[str, dict[str, int]] = {}
    samples: dict[str, int] = {}
    for info in shard_info.values():
        d = shards_n.setdefault(info["split"], {})
        d[info["modality"]] = d.get(info["modality"], 0) + 1
        samples[info["split"]] = samples.get(info["split"], 0) + info["items"]
    media_by_mod = dict(con.execute("select modality, count(*) from media_s group by modality order by modality").fetchall())
    return {
        "pairs": sum(by_split.values()),
        "pairs_by_split": by_split,
        "pairs_by_modality": by_mod,
        "pairs_by_split_modality_type": nested,
        "qcc_pairs": qcc,
        "media_items": sum(media_by_mod.values()),
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
                  stats: dict | None = None, progress: Progress | None = None,
                  batch_rows: int = source.BATCH_ROWS) -> dict:
    """Export accepted pairs (PAIR_SCHEMA) and their media (MEDIA_SCHEMA, uri relative to run_dir) to
    out_dir; return the manifest dict (also written to out_dir/manifest.json).

    progress(stage, done, total) is called with stage in: pairs, shards, acm, card, manifest, up-to-date.
    """
    with tempfile.TemporaryDirectory(prefix="acd-export-") as tmp:
        con = source.connect(Path(tmp))
        try:
            source.table_views(con, pairs, media)
            return _export(con, Path(tmp), run_dir, out_dir, recipe, stats, progress, batch_rows)
        finally:
            con.close()


def write_outputs_sql(store, pairs_sql: str, media_sql: str, run_dir: Path, out_dir: Path, recipe,
                      stats: dict | None = None, progress: Progress | None = None,
                      batch_rows: int = source.BATCH_ROWS) -> dict:
    """write_outputs over a run directory's parts, never holding all rows: `pairs_sql` and `media_sql` are
    DuckDB queries where `{stage}` names a stage's parts (see acd.export.source.run_views)."""
    with tempfile.TemporaryDirectory(prefix="acd-export-") as tmp:
        con = source.connect(Path(tmp))
        try:
            source.run_views(con, store, pairs_sql, media_sql)
            return _export(con, Path(tmp), run_dir, out_dir, recipe, stats, progress, batch_rows)
        finally:
            con.close()


def _export(con, tmp: Path, run_dir: Path, out_dir: Path, recipe, stats: dict | None,
            progress: Progress | None, batch_rows: int) -> dict:
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    source.validate(con)  # everything is checked before the first byte is written
    src = source.materialize(con, tmp, batch_rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs_hash = _inputs_hash(src, recipe, stats)
    state = mf.load_state(out_dir)
    if state.get("inputs_sha256") == inputs_hash and mf.files_unchanged(out_dir, state.get("check", {})):
        if progress:
            progress("up-to-date", 1, 1)
        return json.loads((out_dir / mf.MANIFEST).read_text())

    produced = set(parquet_out.write_pairs(src, out_dir, recipe.export.rows_per_file, progress))
    shard_info = shards.write_shards(con, src, out_dir, run_dir, recipe.shards.target_bytes,
                                     state.get("shards", {}), progress)
    produced |= set(shard_info)
    acm = acm_export.write_acm(con, out_dir, tuple(recipe.export.acm_splits), progress)
    produced |= set(acm["files"])
    summary = card.summarize(con, src, stats, shard_info, acm["counts"])
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
    manifest = mf.build_manifest(entries, _counts(con, shard_info, acm["counts"]), inputs_hash,
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
