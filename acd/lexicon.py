"""The words the grounded writer and the checks share, below both packages.

    lexicon(), hallucination()   prompts/grounded/captions.yaml `lexicon` and `hallucination`: how the writer
                                 words places, sizes, backdrops, sounds, numbers, and the words it may invent
    inflect_engine(), plural()   English inflection (one inflect engine: plurals, articles, number words)
    when_bucket()                which part of a clip a sound starts in ("near the start")

The writer (acd.grounded) writes with them and the checks (acd.checks) read captions with them. They lived in
the writer (grounded.facts, grounded.phrasing), which made the checks import the writer while the writer asks
the checks whether a draft passes (acd.grounded -> acd.checks): a package loop. Now acd.checks never imports
acd.grounded. The grounded backend's revision hashes this module with the writer's code
(acd.grounded.phrasing._revision), since plurals and articles are words of its captions.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import yaml

from acd.paths import PROMPTS_DIR

CAPTIONS_FILE = PROMPTS_DIR / "grounded" / "captions.yaml"  # acd.grounded.phrasing loads the whole file


@lru_cache(maxsize=1)
def _captions() -> dict[str, Any]:
    return yaml.safe_load(CAPTIONS_FILE.read_text())


def lexicon() -> dict[str, Any]:
    """captions.yaml `lexicon` (what load_phrasing().lexicon holds for the packaged phrasing)."""
    return _captions()["lexicon"]


def hallucination() -> dict[str, Any]:
    """captions.yaml `hallucination`: the colours, objects and sounds a rejected caption may invent."""
    return _captions()["hallucination"]


@lru_cache(maxsize=1)
def inflect_engine():
    import inflect

    return inflect.engine()


@lru_cache(maxsize=4096)
def plural(noun: str) -> str:
    """Plural of a noun phrase's head ('series of beeps' stays, 'box' -> 'boxes', 'fish' -> 'fish')."""
    if " of " in noun:
        head, rest = noun.split(" of ", 1)
        return f"{inflect_engine().plural_noun(head)} of {rest}"
    return inflect_engine().plural_noun(noun)


def when_bucket(start: float, duration: float | None) -> str:
    """Which part of a clip a sound starts in: start | middle | end (what "near the start" claims)."""
    frac = start / duration if duration else 0.0
    return "start" if frac < 0.25 else ("middle" if frac < 0.6 else "end")
