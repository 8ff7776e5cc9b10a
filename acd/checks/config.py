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
CONTENT_CHECKS = ("grammar", "facts", "reference", "style", "coverage", "rejected")


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
    unknown = [c for c in out["content"] if c not in CONTENT_CHECKS]
    if unknown:
        raise ValueError(f"checks.content: unknown checks {unknown} (choose from {list(CONTENT_CHECKS)})")
    out["content"] = tuple(out["content"])
    return out


@lru_cache(maxsize=1)
def pattern_sources() -> tuple[str, str, str, int]:
    """(refusal, caption leakage, instruction leakage) as one alternation each, plus the refusal window.

    Written in the common subset of Python re and RE2 (no look-arounds, no back-references), so the
    per-pair path (re) and check_lot's vectorised path (pyarrow/RE2) answer alike. Multi-line mode is
    inline so both engines see it.
    """
    spec = load_checks_spec()
    leak = spec["leakage"]
    placeholders = r"\{\s*(?:" + "|".join(map(re.escape, leak["instruction_placeholders"])) + r")\s*\}"

    def alternation(patterns: list[str]) -> str:
        return "(?m)" + "|".join(f"(?:{p})" for p in patterns)

    return (
        alternation(spec["refusal"]["patterns"]),
        alternation(list(leak["patterns"]) + list(leak["caption_patterns"])),
        alternation(list(leak["patterns"]) + [placeholders]),
        int(spec["refusal"]["window"]),
    )


@lru_cache(maxsize=1)
def compiled_patterns() -> tuple[re.Pattern, re.Pattern, re.Pattern, int]:
    """pattern_sources compiled for Python re (case-insensitive)."""
    refusal, caption_leak, instruction_leak, window = pattern_sources()
    return tuple(re.compile(p, re.IGNORECASE) for p in (refusal, caption_leak, instruction_leak)) + (window,)
