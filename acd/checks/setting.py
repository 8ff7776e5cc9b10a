"""Setting as shown: a caption names a backdrop only while the frames show what makes it that backdrop.

The synthetic grounding keeps the backdrop it was drawn from ("forest", "beach") and says separately what a
viewer can see of it (scene.ground_visible, scene.decorations; acd/synth/backdrop.py reads both from the
frames). A top-down forest is dark green ground with grass and no tree; a low-angle beach is sky and a strip
of sea with no sand. Blind readers reject "against a dense forest" and "an open beach" there ("setting not as
shown"), so naming such a backdrop is a false statement about the media as shown.

Which words name a backdrop and what must be in view for them is data: schemas/checks.yaml
`facts.backdrop_shown_by`. Findings are reported by the fact check (reason fact_chosen).
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from acd.checks.config import load_checks_spec


@lru_cache(maxsize=1)
def _spec() -> dict[str, dict[str, Any]]:
    out = {}
    for bg, spec in (load_checks_spec()["facts"].get("backdrop_shown_by") or {}).items():
        out[bg] = {"rx": re.compile("|".join(f"(?:{w})" for w in spec["words"])),
                   "ground": bool(spec.get("ground")), "decorations": set(spec.get("decorations") or [])}
    return out


def name_shown(g: dict) -> bool:
    """Whether the frames show what makes the backdrop the one the grounding names (True when unknown)."""
    scene = g.get("scene") or {}
    spec = _spec().get((scene.get("background") or "").lower())
    if not spec or "decorations" not in scene:  # a grounding that does not say what is drawn
        return True
    if spec["ground"] and scene.get("ground_visible", True):  # groundings without the field: the ground shows
        return True
    return bool(spec["decorations"] & set(scene.get("decorations") or []))


def problems(text: str, g: dict) -> list[str]:
    """'setting: ...' for a backdrop the caption names while nothing that makes it that backdrop is in view."""
    if not text or name_shown(g):
        return []
    scene = g.get("scene") or {}
    spec = _spec()[(scene.get("background") or "").lower()]
    m = spec["rx"].search(text.lower())
    if not m:
        return []
    shown = ", ".join(scene.get("decorations") or []) or "no decoration"
    return [f"setting: {m.group(0)!r} but the frames show {shown}"
            + ("" if scene.get("ground_visible", True) else " and no ground")]
