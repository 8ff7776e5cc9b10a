"""Prefect flow `sync-reviews`: the review sync of a run dir (acd.review_sync.sync_and_reexport, the path
`acd review sync` and the webhook take too): pull Label Studio annotations, decide its lots, regenerate
rejected ones, re-export the dataset.

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

WAIT_FILE = "review_wait.json"


def _review_block(run_dir: str, recipe: str | None, label_studio_url: str | None, document_root: str | None) -> dict | None:
    """The review block to pull with: the run's own (None), or `recipe`'s, or either pointed at another server.
    Returned as a mapping with every field (a task parameter: names of the token's env var / Secret block,
    never the token)."""
    if not (recipe or label_studio_url):
        return None
    from acd.recipe import load_recipe, recorded_recipe
    from acd.recipe_model import LabelStudio
    from acd.review.config import review_settings

    source = load_recipe(recipe) if recipe else recorded_recipe(run_dir)
    review = review_settings(source)
    if label_studio_url:  # point a recipe without a label_studio block at a server (the token stays in env)
        ls = (review.label_studio or LabelStudio()).model_copy(
            update=dict(url=label_studio_url, **({"document_root": document_root} if document_root else {})))
        review = review.model_copy(update={"label_studio": ls})
    return review.model_dump(mode="json")


@task(name="sync-and-reexport")
def sync_task(run_dir: str, review: dict | None, out_dir: str | None) -> dict:
    from acd.review_sync import sync_and_reexport

    r = sync_and_reexport(run_dir, out_dir=out_dir, review=review)
    return {"decisions": r.decisions, "regenerated": r.regenerated, "out_dir": str(r.out_dir) if r.out_dir else None,
            "pairs": (r.manifest or {}).get("counts", {}).get("pairs")}


def _report(decisions: list[dict]) -> str:
    from acd.review import present

    return present.markdown_table([present.lot_row(d) for d in decisions])


@flow(name="sync-reviews")
def sync_reviews(run_dir: str, recipe: str | None = None, label_studio_url: str | None = None,
                 document_root: str | None = None, out_dir: str | None = None) -> list[dict]:
    """Pull annotations, decide lots, regenerate rejected ones and re-export: into out_dir, else into the out
    dir the run's build exported to. `recipe`: review settings from this recipe instead of the run's own."""
    log = get_run_logger()
    result = sync_task(run_dir, _review_block(run_dir, recipe, label_studio_url, document_root), out_dir)
    decisions = result["decisions"]
    if result["regenerated"]:
        log.info("regenerated %d rejected lot(s): %s", len(result["regenerated"]), ", ".join(result["regenerated"]))
    if result["out_dir"]:
        log.info("re-exported %s: %s pairs", result["out_dir"], result["pairs"])
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
    ap.add_argument("--recipe", default=None, help="review settings from this recipe (default: the run's own)")
    ap.add_argument("--url", default=None, help="Label Studio URL when the recipe has no label_studio block")
    ap.add_argument("--document-root", default=None)
    ap.add_argument("--out", default=None, help="re-export here (default: the out dir the run's build exported to)")
    a = ap.parse_args()
    for d in sync_reviews(a.run, a.recipe, a.url, a.document_root, a.out):
        print(json.dumps(d))


if __name__ == "__main__":
    main()
