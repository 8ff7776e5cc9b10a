"""schemas/checks.yaml as a typed-enough mapping, merged with a recipe's `checks:` section."""
from __future__ import annotations

import copy
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from acd.paths import SCHEMAS_DIR

JUDGES = ("offline", "none", "llm")


@lru_cache(maxsize=4)
def load_checks_spec(path: str | Path | None = None) -> dict[str, Any]:
    path = Path(path) if path else SCHEMAS_DIR / "checks.yaml"
    return yaml.safe_load(path.read_text())


def effective_config(cfg: dict | None) -> dict[str, Any]:
    """The recipe's `checks:` values over the defaults in schemas/checks.yaml; validated."""
    out = copy.deepcopy(load_checks_spec()["defaults"])
    out.update({k: v for k, v in (cfg or {}).items() if v is not None})
    if out["judge"] not in JUDGES:
        raise ValueError(f"checks.judge must be one of {JUDGES}, got {out['judge']!r}")
    for key in ("near_duplicate_threshold", "judge_sample_rate"):
        v = float(out[key])
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"checks.{key} must be in 0..1, got {v}")
        out[key] = v
    out["judge_min_per_lot"] = int(out["judge_min_per_lot"])
    return out


@lru_cache(maxsize=1)
def compiled_patterns() -> tuple[re.Pattern, re.Pattern, int]:
    """(refusal regex, leakage regex, refusal window): one alternation each, so a row costs one search."""
    spec = load_checks_spec()
    refusal = re.compile("|".join(f"(?:{p})" for p in spec["refusal"]["patterns"]), re.IGNORECASE)
    leak = re.compile("|".join(f"(?:{p})" for p in spec["leakage"]["patterns"]), re.IGNORECASE | re.MULTILINE)
    return refusal, leak, int(spec["refusal"]["window"])
