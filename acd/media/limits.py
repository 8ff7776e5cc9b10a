"""Ingest limits as data: schemas/ingest.yaml, deep-merged with a source config's `limits:` mapping."""
from __future__ import annotations

import functools
from typing import Any

import yaml

from acd.merge import deep_merge
from acd.paths import SCHEMAS_DIR


@functools.lru_cache(maxsize=1)
def _defaults() -> dict[str, Any]:
    with open(SCHEMAS_DIR / "ingest.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f)


def load_limits(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The effective limits: defaults from schemas/ingest.yaml with `overrides` merged in (a fresh copy)."""
    return deep_merge(_defaults(), overrides)
