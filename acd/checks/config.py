"""schemas/checks.yaml: the check stage's defaults (the Checks model's), patterns and word lists."""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from acd.paths import SCHEMAS_DIR
# The recipe's `checks:` section is the Checks model of acd.recipe_model, made from this file's defaults.
from acd.recipe_model import CONTENT_CHECKS, JUDGES, as_section, checks_model

__all__ = ["CONTENT_CHECKS", "JUDGES", "checks_settings", "load_checks_spec", "pattern_sources", "compiled_patterns"]


@lru_cache(maxsize=4)
def load_checks_spec(path: str | Path | None = None) -> dict[str, Any]:
    path = Path(path) if path else SCHEMAS_DIR / "checks.yaml"
    return yaml.safe_load(path.read_text())


def checks_settings(cfg: Any = None):
    """The recipe's `checks:` section (the Checks model; a mapping or None is validated into one, its unset
    keys schemas/checks.yaml's defaults)."""
    return as_section(checks_model(), cfg)


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
