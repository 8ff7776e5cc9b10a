"""Ingest limits as data: schemas/ingest.yaml, deep-merged with a source config's `limits:` mapping."""
from __future__ import annotations

import functools
import time
from typing import Any

import yaml

from acd.media.errors import ProbeError
from acd.merge import deep_merge
from acd.paths import SCHEMAS_DIR


@functools.lru_cache(maxsize=1)
def _defaults() -> dict[str, Any]:
    with open(SCHEMAS_DIR / "ingest.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f)


def load_limits(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The effective limits: defaults from schemas/ingest.yaml with `overrides` merged in (a fresh copy)."""
    return deep_merge(_defaults(), overrides)


class Clock:
    """time.max_seconds_per_file for one probe: `check()` between decoded frames/blocks raises `timeout`."""

    def __init__(self, limits: dict):
        self.deadline = time.monotonic() + float(limits.get("time", {}).get("max_seconds_per_file", 20))

    def check(self, what: str) -> None:
        if time.monotonic() > self.deadline:
            raise ProbeError("timeout", f"{what} ran past time.max_seconds_per_file")
