"""The one review sync: annotations in, decisions out, rejected lots regenerated, the dataset re-exported.

`acd review sync`, the `sync-reviews` flow and the Label Studio webhook all call `sync_and_reexport`; they
differ only in how they are started and what they print.

    pull + decide   acd.review.stage.sync: every pushed lot's annotations stored, each lot decided
    regenerate      review.on_reject=regenerate: rejected lots generated again with new wording, reviewed and
                    pushed again (acd.stages.regenerate.regenerate_rejected; at most review.max_regenerations rounds)
    re-export       into `out_dir`, else into the out dir the run's build last exported to
                    (<run>/exported_to.json), so the dataset the build wrote follows the annotators; a run that
                    was never exported (a build waiting for review) is not exported by the sync

Regeneration and the re-export hold the run's lock (acd.runlock): while a build of the run is running, the
sync only stores the decisions and that build's own regenerate and export stages use them.

The recipe is the run's own (<run>/recipe.json: the effective recipe, or, in run dirs made before, the recipe
as written; both load as the Recipe model). `review` replaces its review block for the pull only (a Label
Studio URL given to the flow, the webhook's registry entry); regeneration and the pushes it makes use the
run's recipe, as the build did.

X
stage, so inside acd.review it would close a package loop review -> pipeline -> review.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from acd.recipe_model import Review

log = logging.getLogger(__name__)


@dataclass
class SyncResult:
    decisions: list[dict[str, Any]]  # every lot's current decision, after regeneration (review_decisions)
    regenerated: list[str] = field(default_factory=list)
    out_dir: Path | None = None      # where the dataset was re-exported; None: not exported
    manifest: dict[str, Any] | None = None
    note: str | None = None          # why nothing was regenerated or re-exported (another driver holds the run)


def sync_and_reexport(run_dir: str | Path, *, out_dir: str | Path | None = None, review: Review | Mapping | None = None,
                      client=None, on_lot: Callable[[str], None] | None = None) -> SyncResult:
    """review: None (the run's own review block), or a Review / review block mapping for the pull."""
    from acd.recipe import recorded_recipe
    from acd.review.config import review_settings
    from acd.review.stage import sync
    from acd.runstore import RunStore

    run_dir = Path(run_dir)
    recipe = recorded_recipe(run_dir)
    if review is None:
        pull = recipe  # None: sync says the run has no review.label_studio
    elif recipe is None:
        pull = review_settings(review)
    else:  # the recipe is frozen: a copy with the other review block (the seed stays the run's)
        pull = recipe.model_copy(update={"review": review_settings(review)})
    pulled = sync(run_dir, pull, client=client, on_lot=on_lot).to_pylist()
    log.info("review sync %s: %s", run_dir.name, {d["lot_id"]: d["decision"] for d in pulled})
    if recipe is None:  # review parts only (pushed by hand, never built): nothing to regenerate or export
        if out_dir is not None:
            raise ValueError(f"{run_dir} has no recipe.json: it was not built, so there is nothing to export")
        return SyncResult(pulled)

    from acd import runlock
    from acd.pipeline import Build, last_out_dir
    from acd.stages.export import reexport
    from acd.stages.regenerate import regenerate_rejected

    target = Path(out_dir) if out_dir is not None else last_out_dir(run_dir)
    regenerated: list[str] = []
    manifest = None
    regenerate = recipe.review.on_reject == "regenerate"
    took, note = False, None
    if (regenerate or target is not None) and not runlock.held(run_dir):
        try:  # regenerating and exporting write what a build writes: not while a build of this run is running
            runlock.acquire(run_dir, driver="review-sync")
            took = True
        except runlock.RunLocked as exc:
            note = (f"decisions stored, nothing regenerated or re-exported: {exc}; that build regenerates and "
                    "exports with these decisions")
            log.warning("%s", note)
            regenerate, target = False, None
    try:
        build = Build.from_run_dir(run_dir, target) if regenerate or target is not None else None
        if regenerate:
            regenerated = regenerate_rejected(build)
            if regenerated:
                log.info("regenerated %d rejected lot(s): %s", len(regenerated), ", ".join(regenerated))
        if target is not None:
            manifest = reexport(build)
            log.info("re-exported %s: %s pairs", target, manifest.get("counts", {}).get("pairs"))
    finally:
        if took:
            runlock.release(run_dir)
    store = RunStore(run_dir)
    decisions = store.sql("select * from {review_decisions} order by lot_id").to_pylist()
    return SyncResult(decisions, regenerated, target, manifest, note)

