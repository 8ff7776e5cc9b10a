"""export: once. The accepted pairs of accepted lots and their media to the out dir: Parquet, WebDataset
shards, the ACM training export, the dataset card, the manifest (acd.export.write_outputs). Also the
review sync's re-export (after annotators change decisions)."""
from __future__ import annotations

import json
import time
from typing import Any

import pyarrow as pa

from acd.atomicio import write_text
from acd.records import PAIR_SCHEMA, conform
from acd.runstore import EXPORTED_TO
from acd.stages.base import Progress, Stage, since


class Export(Stage):
    name, task, takes_progress = "export", "export", True
    reads, writes = ("review", "review_decisions", "media_index"), ("out_dir",)

    def run_once(self, build, progress=None):
        return export_stage(build, progress)


# The accepted pairs, as DuckDB SQL over the run's parts (the export streams them; see acd.export.source).
ACCEPTED_SQL = ("select r.* from {review} r join {review_decisions} d using (lot_id) "
                "where d.decision = 'accepted' and r.check_passed")


def accepted_pairs(build) -> pa.Table:
    """All accepted pairs in memory (for tests and small tools; the export itself streams ACCEPTED_SQL)."""
    return conform(build.store.sql(ACCEPTED_SQL + " order by r.split, r.modality, r.pair_id"), PAIR_SCHEMA)


def media_sql(build) -> str:
    """The media rows the export may use, as build.media_table gives them: the planned media index when
    there is one (`_ord`: its row order, for the first-row-wins dedup), else ingest's first row per key
    less the keys dedup excluded."""
    from acd.runstore import DEDUP_DONE, MEDIA_INDEX

    if build.store.has_part(*MEDIA_INDEX):
        path = build.store.part_path(*MEDIA_INDEX)
        return f"select * exclude (file_row_number), file_row_number as _ord from read_parquet('{path}', file_row_number=true)"
    where = "where media_key not in (select media_key from {dedup} where excluded)" \
        if build.store.has_part(*DEDUP_DONE) else ""
    return ("select * from (select * from {ingest} " + where + ") "
            "qualify row_number() over (partition by media_key order by source, source_id) = 1")


def why_nothing_accepted(build) -> str:
    """One line for a build with nothing to export: what happened to the planned pairs."""
    g = build.store.sql("select count(*) as n, count(*) filter (where check_passed) as passed from {generate}"
                       ).to_pylist()[0]
    top = build.store.sql("select f, count(*) as n from (select unnest(check_failures) as f from {generate}) "
                         "group by f order by n desc, f limit 3").to_pylist()
    rejected = build.store.sql("select count(*) as n from {review_decisions} where decision <> 'accepted'"
                              ).to_pylist()[0]["n"] if build.store.has_stage("review_decisions") else 0
    reasons = ", ".join(f"{r['f']} ({r['n']})" for r in top) or "none recorded"
    return (f"no accepted pairs to export: {g['n']} planned, {g['passed']} passed the checks, {rejected} lot(s) "
            f"not accepted; most common failures: {reasons}. See {build.run_dir}/deadletter and rerun after the fix")


def run_stats(build) -> dict[str, Any]:
    """Run facts for the card: counts only (no wall times, so an unchanged rerun rewrites nothing)."""
    s = build.store.sql
    has = build.store.has_stage
    quarantine = {r["reason"]: r["n"] for r in s(
        "select reason, count(*) as n from {quarantine} group by reason order by reason").to_pylist()} \
        if has("quarantine") else {}
    failures = {r["reason"]: r["n"] for r in s(
        "select f as reason, count(*) as n from (select unnest(check_failures) as f from {generate}) "
        "group by f order by f").to_pylist()}
    decisions = s("select * from {review_decisions} order by lot_id").to_pylist()
    human = [d["mode"] == "label_studio" and not d.get("pending") for d in decisions]
    annotators = s("select * from {review_annotators} order by annotator").to_pylist() if has("review_annotators") else []
    from acd.contamination import summarize as contamination
    from acd.cost import card_section

    return {
        "quarantine": quarantine,
        "check_failures": failures,
        # human: every lot decided by annotators; mixed: some still on the automatic decision (pending).
        "review": {"mode": "human" if human and all(human) else ("mixed" if any(human) else "auto"),
                   "lots": decisions, "annotators": annotators},
        # duplicates and evaluation overlap: counts by reason, thresholds, examples (acd.contamination)
        "contamination": contamination(build.store, build.recipe),
        # model backends: requests, tokens and dollars the servers reported (acd.cost); None offline
        "cost": card_section(build.run_dir, build.recipe.backend),
    }


def export(build, progress: Progress | None = None) -> dict[str, Any]:
    """Write the dataset to out_dir; returns its manifest."""
    return export_stage(build, progress)["manifest"]


def export_stage(build, progress: Progress | None = None) -> dict[str, Any]:
    """The export stage: {"manifest": ..., "timings": component seconds} (acd.stages reads the timings)."""
    from acd.export import write_outputs_sql

    if build.out_dir is None:
        raise ValueError(f"{build.run_dir}: no out dir to export to")
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    if build.store.sql(f"select count(*) as n from ({ACCEPTED_SQL})").column("n")[0].as_py() == 0:
        from acd.errors import NothingToExport

        raise NothingToExport(why_nothing_accepted(build))
    stats = run_stats(build)
    t0 = since(t, "queries", t0)
    # Streams: the accepted pairs and their media are read by DuckDB in batches, never all at once.
    manifest = write_outputs_sql(build.store, ACCEPTED_SQL, media_sql(build), build.run_dir, build.out_dir,
                                 build.recipe, stats, progress)
    since(t, "write_outputs", t0)
    write_text(build.run_dir / EXPORTED_TO, json.dumps({"out_dir": str(build.out_dir.resolve())}))
    return {"manifest": manifest, "timings": t}


def reexport(build) -> dict[str, Any]:
    """After a review sync (acd.review_sync; after regenerate_rejected): export again, so rejected lots
    leave the dataset and corrections enter it, and rewrite the run report with the new decisions."""
    from acd.report import write_html_report

    manifest = export(build)
    write_html_report(build, build.out_dir / "report.html")
    return manifest
