"""The export stage alone, in its own process, over a finished run directory (issue 24): its peak RSS.

    python tests/bench/bench_export.py RUN_DIR OUT_DIR [--json FILE]

Runs acd.stages.export.export_stage (what `acd build` runs last) into OUT_DIR (use a fresh one: an
up-to-date out dir returns without exporting) and prints wall seconds, pairs, and the peak RSS of this
process (getrusage: interpreter, imports, DuckDB and the export; the export runs in the driver process
during a build, so this is the export's own share of the build's peak) plus the RSS before the export
started. bench_scale.py runs it after each build.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path


def rss_now() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    from acd.pipeline import Build
    from acd.stages.export import export_stage

    build = Build.from_run_dir(args.run_dir, args.out_dir)
    before = rss_now()
    t0 = time.perf_counter()
    manifest = export_stage(build)["manifest"]
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux
    result = {"pairs": manifest["counts"]["pairs"], "wall_s": round(wall, 2), "rss_before_bytes": before,
              "peak_rss_bytes": peak}
    print(f"export alone: {result['pairs']:,} pairs in {wall:.1f} s; peak RSS {peak / 2**30:.3f} GiB "
          f"(process before the export {before / 2**30:.3f} GiB)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
