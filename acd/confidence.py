"""Confidence intervals for a proportion: the Wilson score interval and its z.

Pure functions over counts, below every package that reports a rate with its interval: the review gate
(acd.review.stats) and the checks' bench (acd.checks.bench), which must not import acd.review (the review
gate reads the checks).
"""
from __future__ import annotations

import math
from statistics import NormalDist


def z_value(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson(k: int, n: int, confidence: float = 0.95, population: int | None = None) -> tuple[float, float]:
    """Wilson score interval for k successes in n, with a finite-population correction when `population`
    is given: n is inflated to n(N-1)/(N-n), the variance of sampling without replacement, so a sample that
    covers most of a lot gets the narrow interval it deserves; a census collapses to the point."""
    if n <= 0:
        return (0.0, 1.0)
    p = k / n
    if population is not None and n >= population:
        return (p, p)
    n_eff = n * (population - 1) / (population - n) if population and population > 1 else n
    z = z_value(confidence)
    z2 = z * z
    denom = 1 + z2 / n_eff
    centre = (p + z2 / (2 * n_eff)) / denom
    half = z * math.sqrt(p * (1 - p) / n_eff + z2 / (4 * n_eff * n_eff)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))
