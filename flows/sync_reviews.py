"""Prefect flow `sync-reviews`: pull Label Studio annotations into a run dir and decide its lots.

Thin: all logic is acd.review. Run it on a schedule, by hand (`make labelstudio-sync RUN=...`), or from a
Label Studio webhook. The token comes from the env var / Prefect Secret named in the recipe's
review.label_studio block; it is never a parameter (parameters are stored and shown).

review.wait=true: the build flow calls wait_for_reviews(run_dir) after pushing; it records its flow run id
and suspends (a deployment run frees its worker; a local run pauses in-process). This flow resumes it once
no lot needs more reviews.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.context import FlowRunContext
from prefect.flow_runs import pause_flow_run, resume_flow_run, suspend_flow_run

from acd.recipe import load_recipe
from acd.review import sync

WAIT_FILE = "review_wait.json"


@task(name="sync-review-annotations")
def sync_task(run_dir: str, recipe: str, label_studio_url: str | None, document_root: str | None) -> list[dict]:
    cfg = load_recipe(recipe)
    if label_studio_url:  # point a recipe without a label_studio block at a server (the token stays in env)
        ls = dict(cfg["review"].get("label_studio") or {})
        ls.update(url=label_studio_url, **({"document_root": document_root} if document_root else {}))
        cfg["review"]["label_studio"] = ls
    return sync(run_dir, cfg).to_pylist()


def _report(decisions: list[dict]) -> str:
    from acd.review import present

    return present.markdown_table([present.lot_row(d) for d in decisions])


@task(name="re-export")
def reexport_task(run_dir: str, out_dir: str) -> dict:
    from acd.pipeline import Build

    build = Build.from_run_dir(run_dir, out_dir)
    build.regenerate_rejected()  # review.on_reject=regenerate: new captions, pushed for review again
    return build.reexport()


@flow(name="sync-reviews")
def sync_reviews(run_dir: str, recipe: str = "demo", label_studio_url: str | None = None,
                 document_root: str | None = None, out_dir: str | None = None) -> list[dict]:
    """Pull annotations, decide lots; with out_dir, re-export so lots annotators rejected leave the dataset."""
    log = get_run_logger()
    decisions = sync_task(run_dir, recipe, label_studio_url, document_root)
    if out_dir:
        manifest = reexport_task(run_dir, out_dir)
        log.info("re-exported %s: %s pairs", out_dir, manifest.get("counts", {}).get("pairs"))
    create_markdown_artifact(_report(decisions), key="review-decisions", description=f"review of {run_dir}")
    # Pending: no human verdict yet or needs_more (the automatic decision stands meanwhile).
    open_lots = [d["lot_id"] for d in decisions if d.get("pending") or d["decision"] == "needs_more"]
    log.info("%d lots: %d accepted, %d rejected, %d pending human review", len(decisions),
             sum(d["decision"] == "accepted" and not d.get("pending") for d in decisions),
             sum(d["decision"] == "rejected" and not d.get("pending") for d in decisions), len(open_lots))
    wait = Path(run_dir) / WAIT_FILE
    if not open_lots and wait.exists():
        flow_run_id = json.loads(wait.read_text())["flow_run_id"]
        resume_flow_run(flow_run_id)
        wait.unlink()
        log.info("resumed waiting build flow run %s", flow_run_id)
    return decisions


def wait_for_reviews(run_dir: str, timeout_s: int = 7 * 24 * 3600) -> None:
    """Inside a flow (review.wait=true): record this flow run and suspend until sync-reviews resumes it."""
    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        raise RuntimeError("wait_for_reviews must be called inside a flow run")
    (Path(run_dir) / WAIT_FILE).write_text(json.dumps({"flow_run_id": str(ctx.flow_run.id)}))
    if ctx.flow_run.deployment_id:
        suspend_flow_run(timeout=timeout_s)  # the run leaves its worker; a resume reschedules it
    else:
        pause_flow_run(timeout=timeout_s)  # no deployment to reschedule: wait in-process


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--recipe", default="demo")
    ap.add_argument("--url", default=None, help="Label Studio URL when the recipe has no label_studio block")
    ap.add_argument("--document-root", default=None)
    ap.add_argument("--out", default=None, help="re-export the dataset here after the sync")
    a = ap.parse_args()
    for d in sync_reviews(a.run, a.recipe, a.url, a.document_root, a.out):
        print(json.dumps(d))


if __name__ == "__main__":
    main()
