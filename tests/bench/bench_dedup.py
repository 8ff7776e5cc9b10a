"""Media dedup benchmark (issue 25): the cost of near deduplication at acd-300k's media count (50k media:
image 25k, video 10k, audio 15k), beside the ingest it rides on, measured in one run.

The acd-300k media are synthetic (deduplicated by bytes only in a build: acd.dedup.near_mode), so this bench
hashes them as if they were real media, to price the near path at that count: for every source batch,
ingest's own work (source.read: render/decode + store) and then the hashes the ingest unit would add
(acd.dedup.hash_rows), timed side by side in this process; then the dedup stage's matching (acd.dedup.decide:
the multi-index pHash search, the fingerprint index, the leader pass) over all of them.
--scale runs a proportional slice (every modality's count times the scale); the printed share is measured,
and the 50k line extrapolates the per-item costs linearly only when the scale is below 1.

    python tests/bench/bench_dedup.py [--scale 1.0] [--workdir /tmp/acd-bench-dedup]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from acd import dedup  # noqa: E402
from acd.recipe import load_recipe  # noqa: E402
from acd.sources.factory import make_source  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--workdir", default="/tmp/acd-bench-dedup")
    args = ap.parse_args()
    recipe = load_recipe("acd-300k")
    counts = {m: max(1, round(getattr(recipe.source.counts, m) * args.scale)) for m in ("image", "video", "audio")}
    total = sum(counts.values())
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    src = make_source({"kind": "synthetic", "counts": counts, "batch_size": recipe.source.batch_size}, recipe.seed)
    cfg = dedup.thresholds(None)
    ingest_s = {m: 0.0 for m in counts}
    hash_s = {m: 0.0 for m in counts}
    tables = []
    t_all = time.perf_counter()
    for batch in src.batches():
        modality = batch.rpartition("-")[0]
        t0 = time.perf_counter()
        result = src.read(batch, work / "media")
        t1 = time.perf_counter()
        tables.append(dedup.hash_rows(result.media, work, None, near=True))
        t2 = time.perf_counter()
        ingest_s[modality] += t1 - t0
        hash_s[modality] += t2 - t1
        print(f"  {batch}: ingest {t1 - t0:6.2f}s  hashes {t2 - t1:5.2f}s", flush=True)
    import pyarrow as pa

    items = dedup.items_of(pa.concat_tables(tables))
    t0 = time.perf_counter()
    rows = dedup.decide(items, [], "near", cfg)
    match_s = time.perf_counter() - t0
    wall = time.perf_counter() - t_all
    ing, hsh = sum(ingest_s.values()), sum(hash_s.values())
    print(f"\nmedia: {total} ({counts}); one process, this machine; wall {wall:.1f}s")
    for m in counts:
        print(f"  {m:5s}: ingest {ingest_s[m]:7.1f}s  hashes {hash_s[m]:6.1f}s "
              f"({1000 * hash_s[m] / counts[m]:.1f} ms/item, {100 * hash_s[m] / ingest_s[m]:.0f}% of its ingest)")
    dedup_s = hsh + match_s
    print(f"dedup: hashes {hsh:.1f}s + matching {match_s:.2f}s = {dedup_s:.1f}s; ingest {ing:.1f}s; "
          f"dedup share of ingest+dedup {100 * dedup_s / (ing + dedup_s):.1f}%")
    print(f"near matches among the synthetic items (procedural look-alikes, not quarantined in a build): "
          f"{len(rows)}")
    if args.scale < 1:
        f = 1 / args.scale
        print(f"at 50k media (x{f:.1f}): hashes ~{hsh * f:.0f}s and ingest ~{ing * f:.0f}s (per-item costs, linear); "
              f"matching was measured at this scale only ({match_s:.2f}s): it grows with the near pairs found too")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
