"""`acd`: build, stats, validate, check, schemas, review sync, eval. The same engine the Prefect flows call."""
from __future__ import annotations

import argparse
import json
import os
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

    def __init__(self, run_dir=None, prices=None):
        self.bars = {}
        self.run_dir, self.prices = run_dir, prices  # model builds: the running cost and its recalibration
        self._recalibrated = False

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(total=total, desc=f"{stage:<9}", unit=self.UNITS.get(stage, "lot"),
                                          dynamic_ncols=True, leave=True, mininterval=0.5)
        bar.total = total
        if stage == "generate" and self.run_dir is not None:
            try:
                self._cost(bar, done, total)
            except Exception as exc:  # noqa: BLE001 - a cost figure must never fail a build
                bar.write(f"cost figures unavailable: {type(exc).__name__}: {exc}", file=sys.stderr)
                self.run_dir = None
        bar.update(done - bar.n)  # update() honours tqdm's refresh throttle; a bare refresh() would not
        if done >= total:
            bar.close()

    def _cost(self, bar, done: int, total: int) -> None:
        """Dollars paid so far on the generate bar; once a tenth of the lots is done, the estimate for the rest
        recalibrated from the usage they reported (acd.cost.recalibrated), printed once."""
        from acd import cost

        bar.set_postfix_str(f"${cost.spent_now():,.2f} spent", refresh=False)
        if not self._recalibrated and 0 < done < total and done >= max(1, total // 10):
            self._recalibrated = True
            line = cost.recalibration_line(self.run_dir, self.prices)
            if line:
                bar.write(line, file=sys.stderr)

    def close(self):
        for bar in self.bars.values():
            bar.close()


def _cancel_batches_on_ctrl_c(run_dir: Path, progress) -> None:
    """backend.mode: batch: Ctrl-C cancels the run's batches on the server (they would go on costing) and says
    what was in flight, then exits. At once: a KeyboardInterrupt would first wait for every lot thread, i.e. for
    the very batches it should cancel. The tracker is committed as it goes, so a rerun picks up from here."""
    import signal

    def on_sigint(signum, frame):
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # a second Ctrl-C stops without cancelling
        from acd import cost
        from acd.backends.batch import cancel_registered
        from acd.backends.batch_tracker import TRACKER_FILE

        cost.flush_all()
        tracker = run_dir / TRACKER_FILE
        said = cancel_registered([tracker]) if tracker.exists() else []
        progress.close()
        print(f"acd build: interrupted; cancelled {len(said)} running batch(es) with {sum(c.lines for c in said)} "
              f"requests in flight" + "".join(f"\n  {c}" for c in said)
              + f"\nrerun the same command to go on (--run-dir {run_dir})", file=sys.stderr, flush=True)
        os._exit(130)

    signal.signal(signal.SIGINT, on_sigint)


def cmd_build(args) -> int:
    from acd import cost
    from acd.pipeline import default_run_dir, run_build
    from acd.recipe import load_recipe
    from acd.runlock import RunLocked

    overrides = _overrides(args.set)
    recipe = load_recipe(args.recipe, overrides)
    run_dir = Path(args.run_dir or default_run_dir(recipe))
    model = not recipe.backend.capabilities.offline
    progress = TqdmProgress(run_dir if model else None, dict(getattr(recipe.backend, "prices", {}) or {}))
    if getattr(recipe.backend, "mode", "online") == "batch":
        _cancel_batches_on_ctrl_c(run_dir, progress)
    try:
        result = run_build(args.recipe, args.out, run_dir=run_dir, overrides=overrides, progress=progress)
    except RunLocked as exc:  # another driver is building this run directory: say who, do nothing
        print(f"acd build: {exc}", file=sys.stderr)
        return 3
    except cost.BudgetExhausted as exc:  # one line: the budget, what was spent, how to go on
        from acd.backends import aio

        # What was already sent (within the budget) finishes and is cached: the rerun does not pay for it again.
        aio.drain(timeout=getattr(recipe.backend, "timeout_s", 120.0))
        progress.close()
        print(f"acd build: {exc} (--run-dir {run_dir})", file=sys.stderr)
        return 2
    finally:
        progress.close()
        cost.flush_all()
    counts = result["manifest"].get("counts", {})
    accepted = sum(1 for d in result["decisions"] if d.get("decision") == "accepted")
    print(f"run directory: {result['run_dir']}")
    print(f"lots: {result['lots']} ({accepted} accepted)")
    print(f"pairs: {json.dumps(counts.get('pairs', counts), sort_keys=True)}")
    print("stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in result["seconds"].items()))
    if model:
        paid = cost.ledger(run_dir)
        print(f"cost: {cost.spent_now():.4f} USD paid in this run, {float(paid.get('usd', 0)):.4f} USD over every run "
              f"of {run_dir} (server-reported usage x schemas/prices.yaml and backend.prices)")
    print(f"dataset written to {Path(result['out_dir']).resolve()}")
    return 0


def cmd_estimate(args) -> int:
    """Ingest and plan into the run directory `acd build` would use (no model request), then count every
    planned request's tokens and dollars (acd.cost)."""
    from acd import cost
    from acd.local_executor import LocalExecutor
    from acd.pipeline import Build, default_run_dir
    from acd.recipe import load_recipe
    from acd.stages import drive

    from acd.review.sampling import workload

    recipe = load_recipe(args.recipe, _overrides(args.set))
    build = Build(recipe, args.run_dir or default_run_dir(recipe), None)
    drive(build, LocalExecutor(build), lambda *a: None, stop_after="plan")
    sizes = [r["n"] for r in build.store.sql("select lot_id, count(*) as n from {plan} group by lot_id "
                                             "order by lot_id").to_pylist()]
    work = workload(sizes, recipe.review)
    offline = recipe.backend.capabilities.offline
    s = {"requests": 0} if offline else cost.summary(cost.estimate_run(build))
    s.update(run_dir=str(build.run_dir), review=work)
    if args.json:
        print(json.dumps(s, indent=2, sort_keys=True))
        return 0
    if offline:
        print(f"estimate for {recipe.name} ({len(sizes)} lots planned in {build.run_dir}): backend "
              f"{recipe.backend.name} sends no model request (nothing to pay)")
    else:
        print(f"estimate for {recipe.name} ({s['lots']} lots planned in {build.run_dir}); prices valid as of "
              f"{s['prices_valid_as_of']}: check them before you rely on the dollars")
        print(cost.format_table(s))
    where = "Label Studio" if work["label_studio"] else "Label Studio (not configured: the automatic gate decides)"
    print(f"review: {work['tasks']:,} tasks in {where} for {work['lots']} lots (first samples and gold items, "
          f"at most; follow-ups for lots near the bar come on top), about {work['annotator_hours']:,} "
          f"annotator-hours at {work['seconds_per_task']:g} s a task (review.seconds_per_task)")
    return 0


def cmd_stats(args) -> int:
    from acd.stats import cost_stats, dataset_stats

    if args.run_dir is None and (Path(args.path) / "recipe.json").exists():  # a run directory: its cost alone
        print(cost_stats(args.path, as_json=args.json))
        return 0
    print(dataset_stats(args.path, as_json=args.json))
    if args.run_dir:  # the section the card and the run report carry, from the run's parts
        from acd.contamination import markdown, summarize
        from acd.recipe import recorded_recipe
        from acd.runstore import RECIPE_FILE, RunStore

        if not (Path(args.run_dir) / RECIPE_FILE).is_file():
            print(f"acd stats: {args.run_dir} is not a run directory (no {RECIPE_FILE})", file=sys.stderr)
            return 2
        summary = summarize(RunStore(args.run_dir), recorded_recipe(args.run_dir))
        print(json.dumps({"contamination": summary}, indent=2, sort_keys=True) if args.json
              else "\nDuplicates and contamination\n\n" + markdown(summary))
        print(cost_stats(args.run_dir, as_json=args.json))
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
    """Pull annotations from Label Studio, decide each lot, regenerate rejected lots, re-export
    (acd.review_sync: the same path as the sync-reviews flow and the webhook)."""
    from acd.review import present
    from acd.review.labelstudio import LabelStudioUnavailable
    from acd.review_sync import sync_and_reexport
    from acd.runstore import RunStore

    try:
        result = sync_and_reexport(args.run_dir, out_dir=args.out)
    except LabelStudioUnavailable as e:  # one sentence, no traceback: nothing stored is lost, rerun later
        print(f"review sync stopped: {e}. Annotations read so far are kept; run `acd review sync` again "
              "when Label Studio answers.", file=sys.stderr)
        return 1
    if result.regenerated:
        print(f"regenerated {len(result.regenerated)} rejected lot(s): {', '.join(result.regenerated)}")
    for line in present.text_lines(result.decisions):
        print(line)
    store = RunStore(args.run_dir)
    s = store.sql
    if store.has_stage("review_annotators"):
        for a in s("select * from {review_annotators} order by annotator").to_pylist():
            print(f"annotator {a['annotator']}: {a['annotations']} verdicts, gold {a['gold_caught']}/{a['gold_seen']}"
                  f" ({present.rate(a['gold_accuracy'])}), skipped {a.get('skipped') or 0}, invalid {a.get('invalid') or 0}")
    if store.has_stage("review_issues"):
        for i in s("select * from {review_issues} where kind in ('invalid', 'skipped', 'correction_refused') "
                   "order by lot_id, kind, task_id").to_pylist():
            print(f"{i['kind']}: lot {i['lot_id']} task {i['task_id']} by {i['annotator']}: {i['reason'] or 'no reason given'}")
    if result.out_dir is not None:
        pairs = (result.manifest or {}).get("counts", {}).get("pairs")
        print(f"re-exported {result.out_dir}: {pairs} pairs; report {result.out_dir}/report.html")
    else:
        print(f"not re-exported: {result.note or 'the run has no exported dataset yet (pass --out DIR to export it)'}")
    return 0


def cmd_check(args) -> int:
    """The build's per-pair checks over a table of pairs (acd.checks.table): result file, per-reason summary;
    exit 1 when the pass rate is under --fail-under, 2 on input that cannot be read as pairs."""
    from acd.checks.table import BadInput, check_path, summarize, write_result

    if args.fail_under is not None and not 0.0 <= args.fail_under <= 1.0:
        raise BadInput(f"--fail-under takes a pass rate between 0 and 1, got {args.fail_under}")
    result = check_path(args.pairs, grounding_from=args.grounding_from)
    write_result(result, args.out)
    summary = summarize(result)
    for line in summary.lines():
        print(line)
    print(f"result written to {args.out}")
    if args.fail_under is not None and summary.pass_rate < args.fail_under:
        print(f"acd check: pass rate {summary.pass_rate:.3f} is below --fail-under {args.fail_under}", file=sys.stderr)
        return 1
    return 0


def cmd_eval(args, rest) -> int:
    from acd.evaluation.anycapeval import main as eval_main

    return eval_main(rest)


def cmd_batches(args) -> int:
    from acd.backends.batch import cancel_registered
    from acd.backends.batch_tracker import TRACKER_FILE, Tracker, live_registry

    if args.run_dir:
        path = Path(args.run_dir) / TRACKER_FILE
        if not path.exists():
            print(f"acd batches: {args.run_dir} has submitted no batch", file=sys.stderr)
            return 1
        paths = [path]
    else:
        paths = live_registry()
    if args.cancel:
        said = cancel_registered(paths)
        print("\n".join(map(str, said)) if said else "no batch is running")
        return 0
    from acd.backends.batch import refresh

    for path in paths:
        t = Tracker(path)
        refresh(t)
        print(f"{path.parent.parent}: " + ", ".join(f"{k} {v}" for k, v in sorted(t.summary().items())))
        for batch_id, status, n in t.live():
            print(f"  {batch_id}: {status}, {n} requests")
        t.close()
    return 0


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
    s.add_argument("--run-dir", default=None,
                   help="the build's run directory: also print its duplicates and contamination section and its "
                        "model cost (usage the servers reported); PATH may be a run directory itself")

    e = sub.add_parser("estimate", help="requests, tokens and dollars a build will cost, before any request")
    e.add_argument("--recipe", default="demo", help="recipe name (schemas/recipes/<name>.yaml) or path")
    e.add_argument("--run-dir", default=None, help="work directory (default: the one `acd build` uses)")
    e.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe value")
    e.add_argument("--json", action="store_true")

    v = sub.add_parser("validate", help="check a built dataset against the contracts")
    v.add_argument("path")

    sc = sub.add_parser("schemas", help="export the record and recipe schemas as JSON Schema (schemas/*.schema.json)")
    sc.add_argument("--out", default=None)

    ck = sub.add_parser("check", help="the build's per-pair checks over any table of pairs (JSONL, Parquet, dataset dir)")
    ck.add_argument("pairs", help="a .jsonl or .parquet file, a built dataset directory (pairs/*.parquet), or a folder "
                    "of InternVL conversation files with meta_*.json (e.g. the official AnyCap slice)")
    ck.add_argument("--out", required=True, help="result file: .jsonl or .parquet (pair_id, passed, failures)")
    ck.add_argument("--fail-under", type=float, default=None, metavar="P",
                    help="exit 1 when the share of pairs passing is below P (0..1)")
    ck.add_argument("--grounding-from", default=None, metavar="RUN_DIR",
                    help="take each pair's grounding from this run's ingest parts, by media_key")

    bt = sub.add_parser("batches", help="Batch API batches of a run directory (backend.mode: batch): list or cancel")
    bt.add_argument("run_dir", nargs="?", default=None, help="the run directory (default: every run with live batches)")
    bt.add_argument("--cancel", action="store_true", help="cancel the batches still running on the server")

    r = sub.add_parser("review", help="human review in Label Studio")
    rsub = r.add_subparsers(dest="review_command", required=True)
    rs = rsub.add_parser("sync", help="pull annotations, gate lots, re-export")
    rs.add_argument("--run-dir", required=True)
    rs.add_argument("--out", default=None,
                    help="re-export the dataset here (default: the out dir the run's build exported to)")
    rsub.add_parser("webhook", help="serve the Label Studio webhook that starts syncs (see --help)", add_help=False)

    sub.add_parser("eval", help="AnyCapEval (arguments are passed on; see `acd eval --help`)", add_help=False)

    args, rest = parser.parse_known_args(argv)
    if args.command == "eval":
        return cmd_eval(args, rest)
    if args.command == "review" and args.review_command == "webhook":
        from acd.review_webhook import main as webhook_main

        webhook_main(rest)
        return 0
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    from acd.errors import AcdError

    try:
        return {"build": cmd_build, "stats": cmd_stats, "estimate": cmd_estimate, "validate": cmd_validate, "schemas": cmd_schemas,
                "review": cmd_review_sync, "check": cmd_check, "batches": cmd_batches}[args.command](args)
    except AcdError as exc:  # something the user can fix: one line, no traceback
        print(f"acd {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
