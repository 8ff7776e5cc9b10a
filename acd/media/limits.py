"""Ingest limits as data: schemas/ingest.yaml, deep-merged with a source config's `limits:` mapping."""
from __future__ import annotations

import copy
import functools
import time
from typing import Any

import yaml

from acd.media.errors import ProbeError
from acd.paths import SCHEMAS_DIR


@functools.lru_cache(maxsize=1)
def _defaults() -> dict[str, Any]:
    with open(SCHEMAS_DIR / "ingest.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f)


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_limits(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The effective limits: defaults from schemas/ingest.yaml with `overrides` merged in (a fresh copy)."""
    return _merge(_defaults(), overrides or {})


class Clock:
    """time.max_seconds_per_file for one probe: `check()` between decoded frames/blocks raises `timeout`."""

    def __init__(self, limits: dict):
        self.deadline = time.monotonic() + float(limits.get("time", {}).get("max_seconds_per_file", 20))

    def check(self, what: str) -> None:
        if time.monotonic() > self.deadline:
            raise ProbeError("timeout", f"{what} ran past time.max_seconds_per_file")
