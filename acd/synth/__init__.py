"""Procedural media with exact ground truth: images (image.py), videos (video.py) and audio (audio.py).

Every item is a pure function of (seed, modality, index) and the vocabulary in schemas/synthetic/vocab.yaml:
`rng_for` derives an independent numpy Generator from those three numbers, and the renderers use only
integer-exact operations before the bytes are written (see each module for the details), so two builds on
any machine with the same pinned libraries give byte-identical files.
"""
from __future__ import annotations

import functools
import zlib
from typing import Any, Sequence

import numpy as np
import yaml

from acd.paths import SCHEMAS_DIR

VOCAB_PATH = SCHEMAS_DIR / "synthetic" / "vocab.yaml"
MODALITIES = ("image", "video", "audio")


@functools.lru_cache(maxsize=1)
def vocab() -> dict[str, Any]:
    return yaml.safe_load(VOCAB_PATH.read_text())


def rng_for(seed: int, modality: str, index: int) -> np.random.Generator:
    # crc32 of the name (not hash(), which is salted per process) keeps streams stable across runs.
    return np.random.default_rng([int(seed) % (1 << 63), zlib.crc32(modality.encode()), int(index)])


def pick(rng: np.random.Generator, options: Sequence[Any] | dict[Any, float]) -> Any:
    """One choice: uniform over a sequence, or weighted over a {option: weight} mapping."""
    if isinstance(options, dict):
        keys = list(options)
        w = np.asarray([float(options[k]) for k in keys])
        return keys[int(rng.choice(len(keys), p=w / w.sum()))]
    return options[int(rng.integers(len(options)))]


def uniform(rng: np.random.Generator, lo_hi: Sequence[float]) -> float:
    return float(rng.uniform(lo_hi[0], lo_hi[1]))


def size_label(extent: float, modality: str) -> str:
    """small / medium / large from extent = sqrt(w * h) of a 0..1 box (thresholds in the vocabulary)."""
    for name, spec in vocab()["sizes"][modality].items():
        if extent < spec["max"]:
            return name
    return name


def r3(x: float) -> float:
    return round(float(x), 3)
