"""Acceptance-sampling statistics: sample size, the lot decision, agreement (the Wilson interval they use is
acd.confidence's, shared with the checks' bench).

Pure functions over counts, so they are unit-tested exhaustively without a server.
"""
from __future__ import annotations

import math

from acd.confidence import wilson, z_value


def sample_size(population: int, p: float = 0.95, margin: float = 0.03, confidence: float = 0.95) -> int:
    """Pairs to review so the estimate lands within ±margin of p at `confidence`.

    n0 = z²p(1-p)/m² (≈203 for p=0.95, m=0.03, 95%), then the finite-population correction
    n = n0 / (1 + (n0-1)/N), because a lot is small and sampled without replacement. Never more than N.
    """
    if population <= 0:
        return 0
    z = z_value(confidence)
    p = min(1.0, max(0.0, p))  # a bar of 0 (every lot passes) or above 1 (none does) sizes like its nearest share
    n0 = z * z * p * (1 - p) / (margin * margin)
    if n0 < 1:  # a bar at the very edge: one look at the lot, and no correction (its denominator would be <= 0)
        return 1
    n = n0 / (1 + (n0 - 1) / population)
    return min(population, math.ceil(n - 1e-9))


def decide(k: int, n: int, *, bar: float, confidence: float, margin: float, population: int | None = None,
           census: bool = False) -> dict:
    """The lot gate. accepted: the interval lies above the bar; rejected: it cannot reach above the bar;
    when it straddles the bar, a sample that reached its designed precision (half-width <= margin, or the
    whole lot) is decided on the point estimate (the acceptance-sampling plan), and a smaller one
    (annotations still coming in) is `needs_more`. census=True: every item was measured (auto gate)."""
    lo, hi = wilson(k, n, confidence, population)
    compliance = k / n if n else None
    if n == 0:
        decision = "needs_more"
    elif lo > bar:
        decision = "accepted"
    elif hi <= bar:
        decision = "rejected"
    elif census or (hi - lo) / 2 <= margin + 1e-12 or (population is not None and n >= population):
        decision = "accepted" if compliance > bar else "rejected"
    else:
        decision = "needs_more"
    return {"n": n, "compliant": k, "compliance": compliance, "ci_low": lo, "ci_high": hi, "decision": decision}


def percent_agreement(ratings: list[list[bool]]) -> float | None:
    """Share of multiply-rated items whose raters all agree."""
    multi = [r for r in ratings if len(r) >= 2]
    if not multi:
        return None
    return sum(1 for r in multi if len(set(r)) == 1) / len(multi)


def cohen_kappa(a: list[bool], b: list[bool]) -> float | None:
    """Cohen's kappa for two binary rating sequences (first vs second rater of each item)."""
    n = len(a)
    if n == 0 or n != len(b):
        return None
    po = sum(x == y for x, y in zip(a, b)) / n
    pa, pb = sum(a) / n, sum(b) / n
    pe = pa * pb + (1 - pa) * (1 - pb)
    if pe >= 1.0:
        return 1.0 if po == 1.0 else 0.0  # every rating identical: agreement is perfect but uninformative
    return (po - pe) / (1 - pe)
