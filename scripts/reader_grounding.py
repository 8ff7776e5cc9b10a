"""Give a reader-labelled file the grounding of what its media really show.

A blind reader judges the pixels and the sound; the labelled pair's `grounding` is what the checks are held
against when `make bench-checks` scores them. Where the synthetic source's grounding once disagreed with its own
rendering (a top-down room called "beige" over dark-brown planks, fixed since), the row would teach the checks
a falsehood. This re-renders each synthetic item from (seed, modality, index) with the current source, checks that
the bytes are the very media the reader saw (sha256 == media_key), and then stores the current grounding as
`grounding`, keeping the one the build had as `grounding_at_read`. Rows whose media no longer render identically
are left as they are and counted.

usage: python scripts/reader_grounding.py LABELLED.jsonl --run-dir RUN_DIR   (rewrites the file in place)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("labelled", type=Path)
    ap.add_argument("--run-dir", type=Path, required=True, help="the run the labelled pairs were built in")
    a = ap.parse_args(argv)

    import duckdb

    from acd.records import dumps
    from acd.sources.synthetic import _renderer

    seed = int(json.loads((a.run_dir / "recipe.json").read_text())["seed"])
    parts = str(a.run_dir / "ingest" / "*" / "part-*.parquet")
    source_of = dict(duckdb.sql(f"select media_key, source_id from read_parquet('{parts}')").fetchall())
    rows = [json.loads(line) for line in a.labelled.read_text().splitlines() if line.strip()]
    changed = same = skipped = 0
    for row in rows:
        sid = source_of.get(row["media_key"], "")
        kind, _, rest = sid.partition(":")
        if kind != "synthetic":
            skipped += 1
            continue
        modality, _, index = rest.partition(":")
        data, grounding, _ = _renderer(modality)(seed, int(index))
        if hashlib.sha256(data).hexdigest() != row["media_key"]:
            skipped += 1  # the source now draws other bytes: this grounding would describe another item
            continue
        row.setdefault("grounding_at_read", row["grounding"])
        row["source_id"] = sid
        new = dumps(grounding)
        changed += new != row["grounding"]
        same += new == row["grounding"]
        row["grounding"] = new
    a.labelled.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"{a.labelled}: {changed} groundings corrected, {same} unchanged, {skipped} left (not re-renderable)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
