"""What a viewer sees of the backdrop, read from the frames as drawn: its dominant named colour, whether the
ground shows, and which decorations show (the grounding's scene.background_colour, .ground_visible and
.decorations).

Why from the pixels: the colour a background is *meant* to have is not what a given viewpoint and lighting
show. A top-down room is all dark-brown floor, not the beige wall; a low-angle beach video is sky and sea
with a two-pixel strip of sand. Blind readers caught both, so the grounding now states only what is drawn.

A `BackdropTally` is fed every frame (an image is one frame) with its picture, its label map (which layer
of the background is on top at each pixel, see acd/synth/scene.py) and the boxes of the objects drawn on
it; the object boxes are cut out, so only backdrop pixels count. Colours are pooled over all frames; a
decoration or the ground is named only if it shows in every frame, since a caption states it for the
whole clip. Integer counts (and IEEE-exact divisions by the frame size), so the names are the same on
every machine.
"""
from __future__ import annotations

import functools

import numpy as np

from acd.synth import vocab
from acd.synth.scene import GROUND, layer_names

# Squared-distance weights per channel: green differences look largest, blue ones smallest (the usual
# rough perceptual weighting), so a dark-brown floor is not named grey and a pale sky not white.
WEIGHTS = np.asarray([2, 4, 3], np.int64)
STRIDE = 2  # colour statistics use every second row and column: the shares barely move, the cost drops 4x


@functools.lru_cache(maxsize=1)
def palette() -> tuple[tuple[str, ...], np.ndarray]:
    """The backdrop colour names and their RGB anchors ((P, 3) int64), from the vocabulary."""
    pal = vocab()["backdrop"]["palette"]
    return tuple(pal), np.asarray(list(pal.values()), np.int64)


def nearest_colour(pixels: np.ndarray) -> np.ndarray:
    """Index into palette() of the nearest named colour, for (n, 3) pixels."""
    _, rgb = palette()
    d = pixels.astype(np.int64)[:, None, :] - rgb
    return np.argmin((d * d * WEIGHTS).sum(axis=-1), axis=-1)


def colour_counts(pixels: np.ndarray) -> np.ndarray:
    """How many of the (n, 3) uint8 pixels are nearest to each palette colour.

    A backdrop is gradients and a few flat decorations, so it has few distinct colours: each is named
    once, which is what keeps this cheap."""
    px = pixels.reshape(-1, 3).astype(np.int64)
    packed, counts = np.unique((px[:, 0] << 16) | (px[:, 1] << 8) | px[:, 2], return_counts=True)
    distinct = np.stack([packed >> 16, (packed >> 8) & 255, packed & 255], axis=1)
    return np.bincount(nearest_colour(distinct), weights=counts, minlength=len(palette()[0])).astype(np.int64)


def colour_shares(pixels: np.ndarray) -> dict[str, float]:
    """{name: share of the pixels nearest to it} for (n, 3) uint8 pixels."""
    counts = colour_counts(pixels)
    total = max(1, int(counts.sum()))
    return {n: int(c) / total for n, c in zip(palette()[0], counts)}


class BackdropTally:
    """Accumulates one item's frames; `scene_fields()` then says what its backdrop shows."""

    def __init__(self, background: str):
        self.layers = layer_names(background)
        self.pixels: list[np.ndarray] = []  # backdrop pixels seen so far, named once at the end
        # Per layer, the smallest share of a frame it covered over all frames seen so far.
        self.min_share = np.full(len(self.layers), np.inf)
        self.min_ground = np.inf  # the same for the ground and what lies on it (grass, planks, ...) together
        decor = vocab()["decorations"]
        self.ground_labels = [GROUND] + [i for i, n in enumerate(self.layers) if n in decor and decor[n].get("ground")]

    def add(self, rgb: np.ndarray, labels: np.ndarray, boxes) -> None:
        """One frame: (H, W, 3) uint8 picture, (H, W) label map, object boxes in pixels (x0, y0, x1, y1)."""
        H, W = labels.shape
        free = np.ones((H, W), bool)
        for x0, y0, x1, y1 in boxes:
            free[max(0, int(y0)):max(0, int(y1)), max(0, int(x0)):max(0, int(x1))] = False
        self.pixels.append(rgb[::STRIDE, ::STRIDE][free[::STRIDE, ::STRIDE]])
        share = np.bincount(labels[free], minlength=len(self.layers))[: len(self.layers)] / float(H * W)
        self.min_share = np.minimum(self.min_share, share)
        self.min_ground = min(self.min_ground, float(share[self.ground_labels].sum()))

    def scene_fields(self) -> dict:
        spec = vocab()["backdrop"]
        names, _ = palette()
        counts = colour_counts(np.concatenate(self.pixels))
        decor = vocab()["decorations"]
        ground = self.min_ground >= float(spec["ground_min_share"])
        # A ground decoration is never named without its ground: a few blades of grass along the bottom
        # edge do not make "a meadow's grass" something a reader can see.
        shown = [n for i, n in enumerate(self.layers[2:], start=2)
                 if self.min_share[i] >= float(decor[n].get("min_share", spec["decor_min_share"]))
                 and (ground or not decor[n].get("ground"))]
        return {
            # Ties go to the palette's first name (argmax), so the choice is deterministic.
            "background_colour": names[int(np.argmax(counts))],
            "ground_visible": bool(ground),
            "decorations": [decor[n]["words"] for n in shown],
        }
