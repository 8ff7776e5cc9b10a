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
def compiled_patterns() -> tuple[re.Pattern, re.Pattern, re.Pattern, int]:
    """(refusal, caption leakage, instruction leakage, refusal window).

    One alternation per regex so a row costs one search per text.
    """
    spec = load_checks_spec()
    flags = re.IGNORECASE | re.MULTILINE
    leak = spec["leakage"]
    common = list(leak["patterns"])
    placeholders = r"\{\s*(?:" + "|".join(map(re.escape, leak["instruction_placeholders"])) + r")\s*\}"

    def alternation(patterns: list[str]) -> re.Pattern:
        return re.compile("|".join(f"(?:{p})" for p in patterns), flags)

    return (
        alternation(spec["refusal"]["patterns"]),
        alternation(common + list(leak["caption_patterns"])),
        alternation(common + [placeholders]),
        int(spec["refusal"]["window"]),
    )
