"""One deep merge for every layered configuration (recipe + overrides, ingest limits, ACM config chains)."""
from __future__ import annotations

import copy
from typing import Any


def deep_merge(base: dict[str, Any] | None, over: dict[str, Any] | None) -> dict[str, Any]:
    """`over` merged into a copy of `base`: mappings merge key by key, anything else in `over` replaces.

    Neither input is modified and the result shares no mutable value with them.
    """
    out = copy.deepcopy(base or {})
    for k, v in (over or {}).items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out
