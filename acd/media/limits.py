"""Ingest limits as data: the IngestLimits model (acd.recipe_model), schemas/ingest.yaml's values unless a
source's `limits:` sets them (key by key: a recipe setting only video.max_side keeps the other video limits)."""
from __future__ import annotations

import time
from typing import Any

from acd.media.errors import ProbeError


def as_limits(limits: Any = None) -> Any:
    """The IngestLimits model of `limits`: the model itself, a mapping of overrides validated (tests and tools
    pass mappings), or None for schemas/ingest.yaml's values."""
    from acd.recipe_model import as_section, ingest_limits_model

    return as_section(ingest_limits_model(), limits)


def load_limits(overrides: Any = None) -> Any:
    """The effective limits (IngestLimits): schemas/ingest.yaml's values with `overrides` set over them."""
    return as_limits(overrides)


class Clock:
    """time.max_seconds_per_file for one probe: `check()` between decoded frames/blocks raises `timeout`."""

    def __init__(self, limits: Any):
        self.deadline = time.monotonic() + float(as_limits(limits).time.max_seconds_per_file)

    def check(self, what: str) -> None:
        if time.monotonic() > self.deadline:
            raise ProbeError("timeout", f"{what} ran past time.max_seconds_per_file")
