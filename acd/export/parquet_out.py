"""pairs/<split>-NNNNN-of-NNNNN.parquet: one row per accepted pair, PAIR_SCHEMA columns, media not embedded.

The file names follow the Hub's split convention so `datasets` would find the splits even without the
card's `configs:`; the card declares them anyway (pairs/<split>-*.parquet). Files are cut at a fixed row
count, so the same pairs always give the same files.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from acd.export import source
from acd.export.fsutil import write_via
from acd.records import PAIR_SCHEMA
from acd.runstore import PARQUET_OPTS

ROW_GROUP_SIZE = 10_000  # bounded reader memory; fixed so the bytes are fixed


def split_file_names(split: str, n_rows: int, rows_per_file: int) -> list[str]:
    n_files = max(1, -(-n_rows // rows_per_file))
    return [f"{split}-{i:05d}-of-{n_files:05d}.parquet" for i in range(n_files)]


def write_pairs(src, out_dir: Path, rows_per_file: int, progress=None) -> list[str]:
    """Write every split from the sorted pairs (acd.export.source.Sorted), a batch at a time; return the
    relative paths written or kept. Each row group is handed to the writer as one contiguous table of
    ROW_GROUP_SIZE rows, as pq.write_table cut it from the whole table: the same bytes."""
    rels: list[str] = []
    total = sum(src.rows_by_split.values())
    done = 0
    for split, stream in source.runs_of(source.scan(src), "split"):
        names = split_file_names(split, src.rows_by_split[split], rows_per_file)
        for name, part in zip(names, source.cut(stream, rows_per_file)):
            rel = f"pairs/{name}"
            rows = [0]

            def produce(tmp, part=part, rows=rows):
                with pq.ParquetWriter(tmp, PAIR_SCHEMA, **PARQUET_OPTS) as w:
                    for group in source.rechunk(part, ROW_GROUP_SIZE):
                        w.write_table(group, row_group_size=ROW_GROUP_SIZE)
                        rows[0] += group.num_rows

            write_via(out_dir / rel, produce)
            rels.append(rel)
            done += rows[0]
            if progress:
                progress("pairs", done, total)
    return rels
