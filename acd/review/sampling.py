"""Which pairs of a lot go to human review, and the gold pairs planted among them.

Deterministic by seed and independent of row order: every pair gets a rank from a hash of
(seed, lot_id, pair_id), and the sample is the lowest ranks. A rerun, a resume on another machine, or a
reordered part all pick the same pairs.
"""
from __future__ import annotations

import hashlib
import math

import pyarrow as pa

from acd.recipe_model import Review
from acd.review.config import review_settings
from acd.review.stats import sample_size

GOLD_KINDS = ("swapped", "foreign")  # chosen<->rejected swapped; chosen taken from another media item


def _rank(seed: int, *parts: str) -> str:
    return hashlib.sha256(":".join([str(seed), *parts]).encode()).hexdigest()


def lot_id_of(pairs: pa.Table) -> str:
    lots = set(pairs.column("lot_id").to_pylist())
    if len(lots) != 1:
        raise ValueError(f"review works on one lot at a time, got lots {sorted(lots)[:5]}")
    return lots.pop()


def sample_order(pairs: pa.Table, seed: int) -> list[str]:
    """Every pair_id of the lot in sampling order: the first sample is a prefix, and each further sample
    (sequential sampling, acd.review.stage) extends it, so no pair is drawn twice."""
    lot = lot_id_of(pairs)
    return sorted(pairs.column("pair_id").to_pylist(), key=lambda pid: _rank(seed, lot, pid))


def first_sample_size(population: int, cfg: Review | dict) -> int:
    rc = review_settings(cfg)
    return sample_size(population, p=rc.compliance_bar, margin=rc.margin, confidence=rc.confidence)


def next_sample_size(sampled: int, population: int, cfg: Review | dict) -> int:
    """The cumulative sample after one more round: max(followup_min, followup_share x sampled) more pairs."""
    rc = review_settings(cfg)
    more = max(rc.followup_min, math.ceil(rc.followup_share * sampled))
    return min(population, sampled + more)


def sample_lot(pairs: pa.Table, cfg: Review | dict, seed: int) -> list[str]:
    """pair_ids to review: enough for a ±margin interval around the bar, or the whole lot if smaller."""
    return sample_order(pairs, seed)[:first_sample_size(pairs.num_rows, cfg)]


def gold_count(n_sampled: int, cfg: Review | dict) -> int:
    rc = review_settings(cfg)
    if n_sampled < 2:
        return 0
    return max(rc.min_gold, round(n_sampled * rc.gold_share))


def plant_gold(pairs: pa.Table, n: int, seed: int) -> list[dict]:
    """`n` known-bad pairs made from the lot's own pairs; every annotator should mark them non-compliant.

    swapped: the rejected caption is shown as chosen and vice versa (needs a pair whose captions differ);
    foreign: the chosen caption of a pair about another media item (content that is not in this one).
    Rows carry PAIR_SCHEMA fields plus gold_kind and gold_source (the pair it was made from).
    """
    rows = pairs.to_pylist()
    if n <= 0 or len(rows) < 2:
        return []
    lot = rows[0]["lot_id"]
    order = sorted(rows, key=lambda r: _rank(seed, lot, "gold", r["pair_id"]))
    gold: list[dict] = []
    for i, src in enumerate(order):
        if len(gold) >= n:
            break
        kind = GOLD_KINDS[len(gold) % len(GOLD_KINDS)]
        if kind == "swapped" and (src.get("is_qcc") or not src.get("rejected") or src["rejected"] == src["chosen"]):
            kind = "foreign"
        if kind == "foreign":
            other = next((o for o in order[i + 1:] + order[:i] if o["media_key"] != src["media_key"] and o.get("chosen")), None)
            if other is None:
                continue
            chosen, rejected = other["chosen"], src["chosen"]
        else:
            chosen, rejected = src["rejected"], src["chosen"]
        row = dict(src)
        row.update(
            pair_id="gold-" + _rank(seed, lot, kind, src["pair_id"])[:24],
            chosen=chosen,
            rejected=rejected,
            is_qcc=False,
            # The annotator must not be told: the task carries neither this pair_id nor a gold flag (see
            # acd.review.stage); they stay in the run dir, keyed by task id.
            rejection_strategy=f"gold_{kind}",
            check_passed=True,  # as a real pair that passed the checks would look
            check_failures=[],
            gold_kind=kind,
            gold_source=src["pair_id"],
        )
        gold.append(row)
    return gold


def workload(lot_sizes: list[int], cfg: Review | dict) -> dict:
    """The human review a build asks for (`acd estimate`): per lot its first sample plus planted gold items, times
    (1 + overlap) for the second annotator's share; annotator-hours at review.seconds_per_task. Lot sizes are the
    planned pairs (an upper bound: pairs that fail the checks are not reviewed); follow-up rounds for lots near
    the bar come on top."""
    rc = review_settings(cfg)
    tasks = 0
    for n in lot_sizes:
        sampled = first_sample_size(n, rc)
        tasks += math.ceil((sampled + gold_count(sampled, rc)) * (1.0 + rc.overlap))
    return {"lots": len(lot_sizes), "tasks": tasks, "seconds_per_task": rc.seconds_per_task,
            "annotator_hours": round(tasks * rc.seconds_per_task / 3600.0, 1),
            "label_studio": rc.label_studio is not None}
