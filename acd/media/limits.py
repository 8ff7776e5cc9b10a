"""Ingest limits as data: schemas/ingest.yaml, deep-merged with a source config's `limits:` mapping."""
from __future__ import annotations

import copy
import functools
from typing import Any

import yaml

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
