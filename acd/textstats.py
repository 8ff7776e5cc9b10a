"""Caption-text statistics a reader notices: variety (distinct word n-grams) and length per type.

Measured the same way on our chosen captions and on the official AnyCap captions, so the dataset card and
`make bench` (tests/bench/bench_captions.py) can put them side by side. The official figures are numbers
computed from the reference release and kept in schemas/reference_figures.yaml (no release text is copied);
the bench recomputes them when the reference folder is present.
"""
from __future__ import annotations

import random
import re
from collections import defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import yaml

from acd.checks.length import count_words
from acd.paths import SCHEMAS_DIR
from acd.taxonomy import taxonomy_type

_TOKEN = re.compile(r"[a-z0-9']+")
SAMPLE = 600  # captions per variety figure (the and the card's unit)


def distinct_ngrams(texts: Iterable[str], n: int = 3, sample: int | None = SAMPLE, seed: int = 0) -> float:
    """Distinct word n-grams / all word n-grams over a seeded sample of texts (lower-cased words)."""
    texts = _sample(texts, sample, seed)
    grams = []
    for t in texts:
        toks = _TOKEN.findall(t.lower())
        grams += zip(*(toks[i:] for i in range(n)))
    return round(len(set(grams)) / len(grams), 3) if grams else 0.0


def _sample(texts: Iterable[str], sample: int | None, seed: int) -> list[str]:
    texts = [t for t in texts if t]
    if sample and len(texts) > sample:
        texts = random.Random(seed).sample(sorted(texts), sample)
    return texts


def stock_phrase(texts: Iterable[str], n: int = 5, sample: int | None = SAMPLE, seed: int = 0) -> tuple[str, float]:
    """The word n-gram found in the most captions of the same seeded sample, and the share of captions
    that carry it ("32% of captions share one stock 5-word phrase"; the official captions: about 0%)."""
    texts = _sample(texts, sample, seed)
    seen: dict[tuple, int] = defaultdict(int)
    for t in texts:
        toks = _TOKEN.findall(t.lower())
        for g in set(zip(*(toks[i:] for i in range(n)))):
            seen[g] += 1
    if not seen:
        return "", 0.0
    g, c = min(seen.items(), key=lambda kv: (-kv[1], kv[0]))
    return " ".join(g), round(c / len(texts), 3)


def mean_words_by_type(rows: Iterable[tuple[str, str, str]]) -> dict[str, float]:
    """{'modality/type': mean words} from (modality, type, caption) rows."""
    acc: dict[str, list[int]] = defaultdict(list)
    for m, t, text in rows:
        acc[f"{m}/{t}"].append(count_words(text))
    return {k: round(sum(v) / len(v), 1) for k, v in sorted(acc.items())}


@lru_cache(maxsize=1)
def reference_figures() -> dict[str, Any]:
    return yaml.safe_load((SCHEMAS_DIR / "reference_figures.yaml").read_text())


def official_captions(ref_dir: str | Path) -> list[tuple[str, str, str]]:
    """(modality, taxonomy type, chosen caption) for every gpt turn in the reference release slice."""
    import json

    out = []
    for f in sorted(Path(ref_dir).rglob("*.jsonl")):
        modality = next((m for m in ("image", "video", "audio") if m in f.parts), None)
        for line in f.read_text().splitlines():
            d = json.loads(line)
            conv = d.get("conversations") or []
            r = d.get("restriction") or []
            if modality and len(conv) >= 2 and r:
                out.append((modality, taxonomy_type(str(r[0]).lower()), conv[1]["value"]))
    return out


def figures(rows: list[tuple[str, str, str]]) -> dict[str, Any]:
    texts = [t for _, _, t in rows]
    phrase, share = stock_phrase(texts)
    return {"distinct_3grams_600": distinct_ngrams(texts),
            "stock_5gram_share_600": share, "stock_5gram": phrase,
            "mean_words": round(sum(count_words(t) for _, _, t in rows) / max(1, len(rows)), 1),
            "mean_words_by_type": mean_words_by_type(rows)}
