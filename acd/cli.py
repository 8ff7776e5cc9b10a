"""`acd`: build, stats, validate, schemas, review sync, eval. The same engine the Prefect flows call."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml


def _overrides(pairs: list[str]) -> dict:
    from acd.recipe import set_dotted

    out: dict = {}
    for item in pairs or []:
        if "=" not in item:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        set_dotted(out, key, yaml.safe_load(value))
    return out


class TqdmProgress:
    """One terminal bar per stage (tqdm writes to stderr, so stdout stays parseable)."""

    # What one step of each stage's bar counts (export stages count rows, shard items or files, not lots).
    UNITS = {"ingest": "batch", "pairs": "pair", "shards": "item", "acm": "row", "card": "file", "manifest": "file"}

    def __init__(self):
        self.bars = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(total=total, desc=f"{stage:<9}", unit=self.UNITS.get(stage, "lot"),
                                          dynamic_ncols=True, leave=True, mininterval=0.5)
        bar.total = total
        bar.update(done - bar.n)  # update() honours tqdm's refresh throttle; a bare refresh() would not
        if done >= total:
            bar.close()

    def close(self):
        for bar in self.bars.values():
            bar.close()


def cmd_build(args) -> int:
    from acd.pipeline import run_build

    progress = TqdmProgress()
    try:
        result = run_build(args.recipe, args.out, run_dir=args.run_dir, overrides=_overrides(args.set), progress=progress)
    finally:
        progress.close()
    counts = result["manifest"].get("counts", {})
    accepted = sum(1 for d in result["decisions"] if d.get("decision") == "accepted")
    print(f"run directory: {result['run_dir']}")
    print(f"lots: {result['lots']} ({accepted} accepted)")
    print(f"pairs: {json.dumps(counts.get('pairs', counts), sort_keys=True)}")
    print("stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in result["seconds"].items()))
    print(f"dataset written to {Path(result['out_dir']).resolve()}")
    return 0


def cmd_stats(args) -> int:
    from acd.stats import dataset_stats

    print(dataset_stats(args.path, as_json=args.json))
    return 0


def cmd_validate(args) -> int:
    from acd.validate import validate_dataset

    problems = validate_dataset(args.path)
    for p in problems:
        print(f"FAIL {p}")
    print("valid" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


def cmd_schemas(args) -> int:
    from acd.paths import SCHEMAS_DIR
    from acd.schema_files import write

    for path in write(args.out or SCHEMAS_DIR):
        print(path)
    return 0


def cmd_review_sync(args) -> int:
    """Pull annotations from Label Studio, decide each lot, and re-export when --out is given."""
    from acd.pipeline import Build
    from acd.review import sync

    build = Build.from_run_dir(args.run_dir, args.out or "out/unused")
    sync(args.run_dir, build.recipe)
    redone = build.regenerate_rejected()  # review.on_reject=regenerate; pushed for review again
    if redone:
        print(f"regenerated {len(redone)} rejected lot(s): {', '.join(redone)}")
    decisions = build.store.sql("select * from {review_decisions} order by lot_id").to_pylist()
    for d in decisions:
        ci = f"[{d['ci_low']:.3f}, {d['ci_high']:.3f}]" if d["ci_low"] is not None else "-"
        print(f"{d['lot_id']:<28} {d['mode']:<12} {d['decision']:<10} compliance {d['compliance'] or 0:.3f} {ci} n={d['n']}")
    if args.out:
        manifest = build.reexport()
        print(f"re-exported {args.out}: {manifest.get('counts', {}).get('pairs')} pairs; report {args.out}/report.html")
    return 0


def cmd_eval(args, rest) -> int:
    from acd.evaluation.anycapeval import main as eval_main

    return eval_main(rest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="acd", description="Build AnyCap-style controllable-captioning datasets")
    sub = parser.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="build a dataset from a recipe (resumes an interrupted run)")
    b.add_argument("--recipe", default="demo", help="recipe name (schemas/recipes/<name>.yaml) or path")
    b.add_argument("--out", required=True, help="output dataset directory")
    b.add_argument("--run-dir", default=None, help="work directory (default: runs/<recipe>-<recipe hash>)")
    b.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe value, e.g. pairs.image=100")

    s = sub.add_parser("stats", help="statistics of a built dataset (DuckDB over its Parquet)")
    s.add_argument("path")
    s.add_argument("--json", action="store_true")

    v = sub.add_parser("validate", help="check a built dataset against the contracts")
    v.add_argument("path")

    sc = sub.add_parser("schemas", help="export the record and recipe schemas as JSON Schema (schemas/*.schema.json)")
    sc.add_argument("--out", default=None)

    r = sub.add_parser("review", help="human review in Label Studio")
    rsub = r.add_subparsers(dest="review_command", required=True)
    rs = rsub.add_parser("sync", help="pull annotations, gate lots, re-export")
    rs.add_argument("--run-dir", required=True)
    rs.add_argument("--out", default=None)
    rsub.add_parser("webhook", help="serve the Label Studio webhook that starts syncs (see --help)", add_help=False)

    sub.add_parser("eval", help="AnyCapEval (arguments are passed on; see `acd eval --help`)", add_help=False)

    args, rest = parser.parse_known_args(argv)
    if args.command == "eval":
        return cmd_eval(args, rest)
    if args.command == "review" and args.review_command == "webhook":
        from acd.review.webhook import main as webhook_main

        webhook_main(rest)
        return 0
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    from acd.errors import AcdError

    try:
        return {"build": cmd_build, "stats": cmd_stats, "validate": cmd_validate, "schemas": cmd_schemas,
                "review": cmd_review_sync}[args.command](args)
    except AcdError as exc:  # something the user can fix: one line, no traceback
        print(f"acd {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
