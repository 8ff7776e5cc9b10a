"""Where the export reads its rows: DuckDB over the inputs, sorted once into temp Parquet, read back in batches.

The export never holds all accepted pairs at once. Its inputs are two SQL views in a DuckDB connection:

    pairs_in   the accepted pairs (PAIR_SCHEMA columns, any order)
    media_in   media rows (MEDIA_SCHEMA columns, any order) plus `_ord`, the row's place in its source
               (the first row of a media_key in (modality, _ord) order wins, as the in-memory export did)

built either over the run's Parquet parts (`run_views`, the export stage) or over Arrow tables
(`table_views`, `write_outputs` with tables). `materialize` sorts both once, with DuckDB under a memory
limit (it spills to the temp dir), into Parquet files in a temp dir: pairs by (split, modality,
media_key, pair_id), media by (modality, media_key), one row per used media_key. Every writer then reads
those files front to back in batches of `batch_rows` (`scan`), or asks DuckDB a grouped question.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from acd.records import MEDIA_SCHEMA, PAIR_SCHEMA, conform

# Rows per batch read back from the sorted files: bounds what any writer holds as Arrow (and as Python
# objects, for the shards' and ACM's per-row work). A test sets it tiny and expects identical bytes.
BATCH_ROWS = 8192
# DuckDB's own ceiling while it sorts and aggregates (it spills to the temp dir beyond it).
DUCKDB_MEMORY = "384MB"
# Row groups of the temp files: a reader buffers one compressed row group per column at most.
TMP_ROW_GROUP = 8192
SPLIT_RE = re.compile(r"^[a-z][a-z0-9_]*$")  # what the Hub accepts as a split name in data_files

PAIRS_ORDER = "split, modality, media_key, pair_id"
MEDIA_ORDER = "modality, media_key"

_SQL_TYPES = {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.int32(): "INTEGER", pa.float64(): "DOUBLE",
              pa.bool_(): "BOOLEAN", pa.list_(pa.string()): "VARCHAR[]"}


def _select_list(schema: pa.Schema, have: set[str]) -> str:
    """SQL conform: exactly `schema`'s columns in order, cast; a missing column reads as typed nulls."""
    cols = []
    for f in schema:
        t = _SQL_TYPES[f.type]
        cols.append(f'CAST("{f.name}" AS {t}) AS "{f.name}"' if f.name in have else f'CAST(NULL AS {t}) AS "{f.name}"')
    return ", ".join(cols)


def connect(tmp_dir: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    con.execute(f"SET memory_limit = '{DUCKDB_MEMORY}'")
    con.execute(f"SET temp_directory = '{tmp_dir / 'duckdb'}'")
    con.execute("SET preserve_insertion_order = true")
    return con


def _columns(con, sql: str) -> set[str]:
    return {r[0] for r in con.execute(f"describe select * from ({sql})").fetchall()}


def _define(con, pairs_sql: str, media_sql: str) -> None:
    con.execute(f"create or replace view pairs_in as select {_select_list(PAIR_SCHEMA, _columns(con, pairs_sql))} "
                f"from ({pairs_sql})")
    media_cols = _columns(con, media_sql)
    con.execute(f"create or replace view media_in as select {_select_list(MEDIA_SCHEMA, media_cols)}, "
                f"{'_ord' if '_ord' in media_cols else '0'} AS _ord from ({media_sql})")


def table_views(con, pairs: pa.Table, media: pa.Table) -> None:
    """Inputs from Arrow tables (conformed first: a contract break fails here, before anything is written)."""
    pairs = conform(pairs, PAIR_SCHEMA)
    media = conform(media, MEDIA_SCHEMA)
    media = media.append_column("_ord", pa.array(range(media.num_rows), pa.int64()))
    con.register("pairs_arrow", pairs)
    con.register("media_arrow", media)
    _define(con, "select * from pairs_arrow", "select * from media_arrow")


def run_views(con, store, pairs_sql: str, media_sql: str) -> None:
    """Inputs from a run directory: `{stage}` in the SQL names that stage's parts (as RunStore.sql)."""
    stages = {s.name for s in store.root.iterdir() if s.is_dir()}
    mapping = {s: f"read_parquet('{store.glob(s)}', union_by_name=true)" for s in stages}
    _define(con, pairs_sql.format(**mapping), media_sql.format(**mapping))


def validate(con) -> None:
    """Every check the export makes before it writes its first byte (all in DuckDB, over the views)."""
    from acd.errors import NothingToExport

    n = con.execute("select count(*) from pairs_in").fetchone()[0]
    if n == 0:
        raise NothingToExport("no accepted pairs to export (an empty dataset would not load)")
    for f in PAIR_SCHEMA:
        if not f.nullable:
            nulls = con.execute(f'select count(*) from pairs_in where "{f.name}" is null').fetchone()[0]
            if nulls:
                raise ValueError(f"column {f.name!r} must not be null ({nulls} nulls)")
    for col in ("instruction", "chosen", "rejected"):
        if con.execute(f"select count(*) from pairs_in where {col} is null").fetchone()[0]:
            raise ValueError(f"pairs: column {col!r} has nulls; only finished, accepted pairs can be exported")
    splits = [r[0] for r in con.execute("select distinct split from pairs_in order by split").fetchall()]
    bad = sorted(s for s in splits if not SPLIT_RE.match(s))
    if bad:
        raise ValueError(f"pairs: split names {bad} are not valid dataset split names")
    if con.execute("select count(distinct pair_id) from pairs_in").fetchone()[0] != n:
        raise ValueError("pairs: pair_id is not unique")
    missing = con.execute("select count(*), min(media_key) from (select distinct media_key from pairs_in) p "
                      "where media_key not in (select media_key from media_in)").fetchone()
    if missing[0]:
        raise ValueError(f"pairs reference {missing[0]} media_key(s) with no media row, e.g. {missing[1]}")
    # Fail before writing anything (not halfway through the shards) when a pair and its media disagree.
    bad = con.execute(f"select p.media_key, m.modality, p.modality from pairs_in p join ({_media_used()}) m "
                  "using (media_key) where p.modality <> m.modality order by p.media_key limit 1").fetchone()
    if bad:
        raise ValueError(f"media {bad[0]} is {bad[1]!r} but its pairs say {bad[2]!r}")


def _media_used() -> str:
    # One row per media_key (the key is the content hash; duplicates from re-ingest are the same bytes):
    # the first in (modality, source order), only the keys some pair uses.
    return ("select * exclude (_ord) from media_in where media_key in (select media_key from pairs_in) "
            "qualify row_number() over (partition by media_key order by modality, _ord) = 1")


@dataclass
class Sorted:
    """The sorted temp files and the facts every writer needs up front."""
    pairs: Path
    media: Path
    rows_by_split: dict[str, int] = field(default_factory=dict)
    batch_rows: int = BATCH_ROWS
    largest_batch: int = 0  # the most rows any scan handed out at once (the streaming test reads it)


def materialize(con, tmp_dir: Path, batch_rows: int = BATCH_ROWS) -> Sorted:
    pairs, media = tmp_dir / "pairs.parquet", tmp_dir / "media.parquet"
    opts = f"(format parquet, compression zstd, row_group_size {TMP_ROW_GROUP})"
    con.execute(f"copy (select * from pairs_in order by {PAIRS_ORDER}) to '{pairs}' {opts}")
    con.execute(f"copy (select * from ({_media_used()}) order by {MEDIA_ORDER}) to '{media}' {opts}")
    con.execute(f"create or replace view pairs_s as select * from read_parquet('{pairs}')")
    con.execute(f"create or replace view media_s as select * from read_parquet('{media}')")
    rows = dict(con.execute("select split, count(*) from pairs_s group by split order by split").fetchall())
    return Sorted(pairs=pairs, media=media, rows_by_split=rows, batch_rows=batch_rows)


def scan(src: Sorted, which: str = "pairs", columns: list[str] | None = None) -> Iterator[pa.Table]:
    """The sorted file front to back, `src.batch_rows` rows at a time, conformed (all columns) or cast."""
    schema = PAIR_SCHEMA if which == "pairs" else MEDIA_SCHEMA
    f = pq.ParquetFile(src.pairs if which == "pairs" else src.media)
    try:
        for b in f.iter_batches(batch_size=src.batch_rows, columns=columns, use_threads=False):
            src.largest_batch = max(src.largest_batch, b.num_rows)
            t = pa.Table.from_batches([b])
            if columns is None:
                yield conform(t, schema)
            else:
                yield pa.Table.from_arrays([t.column(c).cast(schema.field(c).type) for c in columns],
                                           schema=pa.schema([schema.field(c) for c in columns]))
    finally:
        f.close()


def rechunk(tables: Iterable[pa.Table], rows: int) -> Iterator[pa.Table]:
    """Contiguous tables of exactly `rows` rows (the last one shorter), whatever the input batches: writers
    whose bytes depend on chunk boundaries (Parquet row groups, IPC batches) get the boundaries they had."""
    buf: list[pa.Table] = []
    have = 0
    for t in tables:
        while t.num_rows:
            take = min(rows - have, t.num_rows)
            buf.append(t.slice(0, take))
            have += take
            t = t.slice(take)
            if have == rows:
                yield pa.concat_tables(buf).combine_chunks()
                buf, have = [], 0
    if have:
        yield pa.concat_tables(buf).combine_chunks()


def cut(tables: Iterable[pa.Table], rows: int) -> Iterator[Iterator[pa.Table]]:
    """The stream in consecutive pieces of `rows` rows each (the last shorter), each piece a sub-stream
    of slices; consume a piece before asking for the next."""
    it = iter(tables)
    rest: list[pa.Table] = []

    def piece() -> Iterator[pa.Table]:
        left = rows
        while left:
            t = rest.pop() if rest else next(it, None)
            if t is None:
                return
            if t.num_rows > left:
                rest.append(t.slice(left))
                t = t.slice(0, left)
            left -= t.num_rows
            yield t

    while True:
        if not rest:
            t = next(it, None)
            while t is not None and t.num_rows == 0:
                t = next(it, None)
            if t is None:
                return
            rest.append(t)
        p = piece()
        yield p
        for _ in p:
            pass


def runs_of(tables: Iterable[pa.Table], column: str) -> Iterator[tuple[str, Iterator[pa.Table]]]:
    """Group a stream sorted by `column` into (value, that value's sub-stream), like itertools.groupby over
    batches: the caller must consume each sub-stream before asking for the next group."""
    it = iter(tables)
    pending: list[pa.Table] = []

    def pull() -> bool:
        for t in it:
            if t.num_rows:
                pending.append(t)
                return True
        return False

    while pending or pull():
        value = pending[0].column(column)[0].as_py()

        def group(value=value) -> Iterator[pa.Table]:
            while pending or pull():
                t = pending.pop(0)
                vals = t.column(column)
                # first row whose value differs (the stream is sorted, so the rest of t is other groups)
                diff = pc.not_equal(vals, pa.scalar(value, vals.type))
                idx = pc.index(diff, True).as_py()
                if idx == -1:
                    yield t
                    continue
                if idx:
                    yield t.slice(0, idx)
                pending.insert(0, t.slice(idx))
                return

        g = group()
        yield value, g
        for _ in g:  # drain whatever the caller left
            pass
