"""plan: once. The deduplicated media index (one part every lot looks its media up in), then the pair
specs (acd.plan.plan_pairs) cut into lots, one plan part per lot; plan/_DONE lists the lots, last."""
from __future__ import annotations

import pyarrow.compute as pc

from acd.atomicio import write_text
from acd.plan import plan_pairs
from acd.runstore import MEDIA_INDEX, PLAN_DONE, write_parquet_atomic
from acd.stages.base import Stage


class Plan(Stage):
    name, task = "plan", "plan"
    reads, writes = ("ingest",), ("media_index", "plan")

    def run_once(self, build, progress=None):
        return plan(build)


def plan(build) -> list[str]:
    done = build.run_dir / PLAN_DONE
    if done.exists():
        return done.read_text().split()
    media = build.media_table()
    # Sorted by key in small row groups: one immutable lookup table for every lot (see MEDIA_INDEX).
    write_parquet_atomic(media.sort_by("media_key"), build.store.part_path(*MEDIA_INDEX), row_group_size=4096)
    table = plan_pairs(media, build.recipe)
    lots = sorted(set(table.column("lot_id").to_pylist()))
    # plan_pairs returns rows sorted by (lot_id, pair_id): each lot is one contiguous slice.
    ids = table.column("lot_id").to_pylist()
    starts = [i for i in range(len(ids)) if i == 0 or ids[i] != ids[i - 1]] + [len(ids)]
    if [ids[i] for i in starts[:-1]] != lots:  # not sorted after all: filter per lot
        for lot in lots:
            build.store.write_part("plan", lot, table.filter(pc.equal(table.column("lot_id"), lot)))
    else:
        for lot, a, b in zip(lots, starts, starts[1:]):
            build.store.write_part("plan", lot, table.slice(a, b - a))
    write_text(done, "\n".join(lots))
    return lots
