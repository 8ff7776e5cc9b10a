"""Stage 6, review: acceptance sampling per lot, human review in Label Studio, and the lot gate.

The pipeline calls, per lot:
    review_lot(pairs, review, seed) -> (pairs with review columns, lot decision dict)   # always (auto gate)
    push_lot(run_dir, pairs, review, seed)                                                # when review.label_studio is set
and, separately (never blocking a worker), `sync(run_dir, recipe)` or the `sync-reviews` flow pulls the
annotations back and rewrites the lots' review parts with the human decisions. `review` is the recipe's
Review model (recipe.review); review_settings() takes a Recipe, a Review, None or a plain mapping to it.
"""
from acd.review.config import review_settings
from acd.review.gate import review_lot
from acd.review.sampling import plant_gold, sample_lot
from acd.review.stats import sample_size, wilson
from acd.review.stage import push_lot, sync

__all__ = ["review_settings", "review_lot", "push_lot", "sync", "sample_lot", "plant_gold", "sample_size", "wilson"]
