"""The run directory: immutable Parquet parts per stage and lot, atomic writes, DuckDB over all of it.

    <run>/<stage>/<lot>/part-<k>.parquet

A part that exists is done; a rerun skips it. Parts are written to a temp name and renamed, so a crash
never leaves a half part behind. Every cross-part question goes to DuckDB, which reads the parts directly.
"""
from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from acd.atomicio import write_via

# Names in the run directory beside the stage parts (one place for every reader and writer):
# the media rows of a planned run, deduplicated, in one part (written by plan, before plan/_DONE): lots
# look their media up here instead of scanning every ingest part with DuckDB once per lot.
MEDIA_INDEX = ("media_index", "all")
PLAN_DONE = "plan/_DONE"
# The dedup stage's decisions (acd.dedup.DEDUP_SCHEMA): the media keys plan's media table leaves out; its done-marker.
DEDUP_DONE = ("dedup", "all")  # the planned lots, one per line: plan's done-marker
# Which out dir the run's dataset was last exported to (absolute): where a review sync re-exports by default.
EXPORTED_TO = "exported_to.json"
# A lot's parts that judged its captions; a regenerated lot loses them (stages.generate.invalidate_downstream).
REVIEW_PARTS = ("review_decisions", "review")
# The effective recipe (every field, the value the build uses), and the recipe as written, whose hash
# names the run directory and enters the export's input hash.
RECIPE_FILE = "recipe.json"
RECIPE_WRITTEN = "recipe.written.json"

# Fixed writer settings: identical input gives byte-identical files (no timestamps in Parquet metadata).
PARQUET_OPTS = dict(compression="zstd", use_dictionary=True, write_statistics=True, version="2.6")


def write_parquet_atomic(table: pa.Table, path: Path, **opts) -> Path:
    return write_via(path, lambda tmp: pq.write_table(table, tmp, **{**PARQUET_OPTS, **opts}))


class RunStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    @property
    def media_dir(self) -> Path:
        return self.root / "media"

    def part_path(self, stage: str, lot: str, k: int = 0) -> Path:
        return self.root / stage / lot / f"part-{k}.parquet"

    def has_part(self, stage: str, lot: str, k: int = 0) -> bool:
        return self.part_path(stage, lot, k).exists()

    def write_part(self, stage: str, lot: str, table: pa.Table, k: int = 0) -> Path:
        return write_parquet_atomic(table, self.part_path(stage, lot, k))

    def read_part(self, stage: str, lot: str, k: int = 0) -> pa.Table:
        return pq.read_table(self.part_path(stage, lot, k))

    def lots(self, stage: str) -> list[str]:
        d = self.root / stage
        if not d.exists():
            return []
        return sorted(p.name for p in d.iterdir() if p.is_dir() and any(p.glob("part-*.parquet")))

    def glob(self, stage: str) -> str:
        return str(self.root / stage / "*" / "part-*.parquet")

    def has_stage(self, stage: str) -> bool:
        return bool(self.lots(stage))

    def sql(self, query: str, **params) -> pa.Table:
        """Run DuckDB SQL where `{stage}` placeholders name a stage's parts, e.g. "select * from {plan}"."""
        stages = {s.name for s in self.root.iterdir() if s.is_dir()} if self.root.exists() else set()
        mapping = {s: f"read_parquet('{self.glob(s)}', union_by_name=true)" for s in stages}
        con = duckdb.connect()
        try:
            con.execute("SET threads TO 2")
            return con.sql(query.format(**mapping), params=params or None).to_arrow_table()
        finally:
            con.close()

    def read_stage(self, stage: str) -> pa.Table:
        lots = self.lots(stage)
        if not lots:
            raise FileNotFoundError(f"{self.root}: stage {stage!r} has no parts yet")
        return pa.concat_tables([pq.read_table(p) for lot in lots for p in sorted((self.root / stage / lot).glob("part-*.parquet"))])
