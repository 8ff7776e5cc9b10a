"""regenerate: review.on_reject=regenerate. The lots review rejected are generated again, one unit per lot
on the same executors as generate (pool, Prefect threads, Dask workers); listing them (take_rejected, in
the driver, before any unit runs) moves their parts aside to superseded/<lot>/round-k."""
from __future__ import annotations

from acd.stages.base import Stage
from acd.stages.generate import generate, generate_where, regeneration_round, warm_up
from acd.stages.review import review


class Regenerate(Stage):
    # Reported (a progress bar, a timings.json line with the worker processes) when it has lots to redo.
    name, unit, task, retries = "regenerate", "lot", "regenerate-lot", 1
    reads, writes = ("review_decisions", "plan", "media_index"), ("superseded", "deadletter", "generate")

    def active(self, build):
        return build.recipe.review.on_reject == "regenerate"

    def units(self, build, results):
        return take_rejected(build)

    def where(self, build):
        return generate_where(build)

    def before(self, build):
        if build.concurrent_lots:
            warm_up(build)

    def run(self, build, unit):
        return generate(build, unit)


def take_rejected(build) -> list[str]:
    """review.on_reject=regenerate: the lots to generate again. A rejected lot's parts move to
    superseded/<lot>/round-k; the regenerate stage then generates it again with fresh attempts (new
    wording) and rereview reviews it again (pushed again with Label Studio). At most
    review.max_regenerations rounds per lot; after that the lot stays rejected (dropped)."""
    rounds = build.recipe.review.max_regenerations
    if not build.store.has_stage("review_decisions"):
        return []
    redo = []
    for d in build.store.sql("select lot_id, decision, action from {review_decisions} order by lot_id").to_pylist():
        if d["decision"] != "rejected" or d["action"] != "regenerate":
            continue
        k = regeneration_round(build, d["lot_id"])
        if k >= rounds:
            continue
        dest = build.run_dir / "superseded" / d["lot_id"] / f"round-{k}"
        dest.mkdir(parents=True, exist_ok=True)
        # Decisions first: a crash mid-move must not leave a decision standing without its pairs.
        for part in ("review_decisions", "review", "deadletter", "generate"):
            src = build.run_dir / part / d["lot_id"]
            if src.exists():
                src.rename(dest / part)
        redo.append(d["lot_id"])
    return redo


def regenerate_rejected(build) -> list[str]:
    """take_rejected, then each lot generated and reviewed again here (a review sync's path: it runs in
    one process; a build runs the same as its regenerate and rereview stages)."""
    redo = take_rejected(build)
    for lot in redo:
        generate(build, lot)
        review(build, lot)
    return redo
