"""The check stage: deterministic rules, near-duplicates, the offline judge, and check_lot over a lot.

Importing this package does not import torch; the judge's model loads on first use.
"""
from acd.checks.lot import JUDGE_PREFERS_REJECTED, check_lot, judge_sample, sample_key
from acd.checks.neardup import NEAR_DUPLICATE, near_duplicates
from acd.checks.rules import check_pair

__all__ = [
    "check_lot", "check_pair", "near_duplicates", "judge_sample", "sample_key",
    "NEAR_DUPLICATE", "JUDGE_PREFERS_REJECTED",
]
