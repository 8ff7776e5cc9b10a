"""pairs/<split>-NNNNN-of-NNNNN.parquet: one row per accepted pair, PAIR_SCHEMA columns, media not embedded.

The file names follow the Hub's split convention so `datasets` would find the splits even without the
card's `configs:`; the card declares them anyway (pairs/<split>-*.parquet). Files are cut at a fixed row
count, so the same pairs always give the same files.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from acd.export.fsutil import write_via
from acd.runstore import PARQUET_OPTS

ROW_GROUP_SIZE = 10_000  # bounded reader memory; fixed so the bytes are fixed


def split_file_names(split: str, n_rows: int, rows_per_file: int) -> list[str]:
    n_files = max(1, -(-n_rows // rows_per_file))
    return [f"{split}-{i:05d}-of-{n_files:05d}.parquet" for i in range(n_files)]


def write_pairs(pairs_by_split: dict[str, pa.Table], out_dir: Path, rows_per_file: int,
                progress=None) -> list[str]:
    """Write every split's (already sorted, conformed) table; return the relative paths written or kept."""
    rels: list[str] = []
    total = sum(t.num_rows for t in pairs_by_split.values())
    done = 0
    for split in sorted(pairs_by_split):
        table = pairs_by_split[split]
        names = split_file_names(split, table.num_rows, rows_per_file)
        for i, name in enumerate(names):
            part = table.slice(i * rows_per_file, rows_per_file)
            rel = f"pairs/{name}"
            write_via(out_dir / rel, lambda tmp, part=part: pq.write_table(
                part, tmp, row_group_size=ROW_GROUP_SIZE, **PARQUET_OPTS))
            rels.append(rel)
            done += part.num_rows
            if progress:
                progress("pairs", done, total)
    return rels
