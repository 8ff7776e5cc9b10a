"""review: one unit per lot, in the driver (cheap; a Label Studio push belongs to one client). The gate
(acd.review.gate) decides the lot from its checks or annotators; rereview runs the same over every lot
after regenerate, so its result is every lot's current decision."""
from __future__ import annotations

from typing import Any

from acd.records import PAIR_SCHEMA, conform, rows_to_table
from acd.stages.base import Stage


class Review(Stage):
    name, unit, task = "review", "lot", "review-lot"
    reads, writes = ("generate",), ("review", "review_decisions")

    def units(self, build, results):
        return results["plan"]

    def run(self, build, unit):
        return review(build, unit)

    def after(self, build, executor, result):
        # review.wait: a driver that can suspend (the Prefect flow) waits for the annotators here.
        return executor.await_humans(build, result)


class Rereview(Stage):
    """The regenerated lots reviewed again (pushed again with Label Studio); its result is every lot's
    current decision (reviewed lots answer from their parts), which stands for review's."""
    name, unit, task = "rereview", "lot", "review-lot"
    reported, replaces = False, "review"
    reads, writes = ("generate",), ("review", "review_decisions")

    def active(self, build):
        return build.recipe.review.on_reject == "regenerate"

    def units(self, build, results):
        return results["plan"] if results.get("regenerate") else []

    def run(self, build, unit):
        return review(build, unit)


def review(build, lot: str) -> dict[str, Any]:
    """The lot's decision: the automatic gate's, provisional while Label Studio annotators review its
    sample (pushed here). review/<lot> and review_decisions/<lot> (written last: the done-marker)."""
    # review/ and review_decisions/ hold each lot's *current* decision: `acd review sync` replaces the
    # automatic one with the annotators' when Label Studio is configured.
    cfg = build.recipe.review
    if build.store.has_part("review", lot) and build.store.has_part("review_decisions", lot):
        if cfg.label_studio:  # a push that found Label Studio down is retried now
            from acd.review.stage import retry_queued_lot

            retry_queued_lot(build.run_dir, lot, cfg)
        return build.store.read_part("review_decisions", lot).to_pylist()[0]
    from acd.review.gate import DECISION_SCHEMA, review_lot

    pairs = build.store.read_part("generate", lot)
    # The automatic gate always runs; with Label Studio configured its decision is provisional and the
    # lot's sample goes to annotators (push and move on: `acd review sync` / sync-reviews decides later).
    reviewed, decision = review_lot(pairs, cfg, build.recipe.seed)
    if cfg.label_studio:
        from acd.review.stage import push_or_queue

        # Label Studio down: queued (retried by the next build or sync), the automatic decision stands.
        decision["pushed"] = push_or_queue(build.run_dir, pairs, cfg, build.recipe.seed)
        if cfg.label_studio.webhook_url:
            from acd.review.registry import register_run

            # Syncs the webhook starts then also re-export this build's dataset.
            register_run(build.run_dir, cfg, out_dir=build.out_dir.resolve() if build.out_dir else None)
    build.store.write_part("review", lot, conform(reviewed, PAIR_SCHEMA))
    build.store.write_part("review_decisions", lot, rows_to_table([decision], DECISION_SCHEMA))
    return decision
