"""Backgrounds: a sky band and a ground band split at the viewpoint's horizon, decorations, lighting.

A background is a pure function of (name, viewpoint, lighting, width, height, variant) and is cached: a
build draws a few hundred distinct ones and reuses them for thousands of items (the per-item variety
comes from the objects). Decorations get their own generator seeded from the cache key, so the cache
changes nothing about the bytes. Only integer/IEEE-exact arithmetic (no sin/exp) so pixels are the same on
every machine.

Each background also has a label map of the same size (`layers`): which layer (sky, ground or one of the
decorations) is on top at each pixel. It is drawn by the very same calls as the picture, so the grounding
can say what a frame really shows (acd/synth/backdrop.py) rather than what the background is meant to have.
"""
from __future__ import annotations

import functools
import zlib

import numpy as np
from PIL import Image, ImageDraw

from acd.synth import vocab

VARIANTS = 4  # distinct decorations per (background, viewpoint, lighting)


def _lerp_rows(c0, c1, n: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, max(n, 1))[:, None]
    return np.asarray(c0, float)[None, :] * (1 - t) + np.asarray(c1, float)[None, :] * t


def horizon_px(viewpoint: str, h: int) -> int:
    return int(round(vocab()["viewpoints"][viewpoint]["horizon"] * h))


SKY, GROUND = 0, 1  # labels of the two bands; decoration i of the background's `decor` list is label 2 + i


def layer_names(name: str) -> list[str]:
    """The label map's layers, by label: "sky" (the wall, in a room), "ground", then the decorations."""
    return ["sky", "ground"] + list(vocab()["backgrounds"][name]["decor"])


class _Layered:
    """An ImageDraw stand-in that makes every drawing call twice: in colour on the picture, and with the
    current layer's label as the fill on the label map. The two cannot drift apart (same call, same
    coordinates), so the map says exactly which decoration covers which pixel."""

    def __init__(self, img: Image.Image, labels: Image.Image):
        self._paint, self._mark = ImageDraw.Draw(img), ImageDraw.Draw(labels)
        self.label = SKY

    def __getattr__(self, name):
        paint, mark = getattr(self._paint, name), getattr(self._mark, name)

        def both(*args, **kw):
            paint(*args, **kw)
            mark(*args, **{k: (self.label if k in ("fill", "outline") and v is not None else v) for k, v in kw.items()})
        return both


@functools.lru_cache(maxsize=1024)
def _drawn(name: str, viewpoint: str, w: int, h: int, variant: int) -> tuple[np.ndarray, np.ndarray]:
    """The unlit picture (h, w, 3) and its label map (h, w), both uint8 and read-only."""
    bg = vocab()["backgrounds"][name]
    hz = horizon_px(viewpoint, h)
    rows = np.concatenate([_lerp_rows(*bg["sky"], hz)[:hz], _lerp_rows(*bg["ground"], h - hz)], axis=0)
    arr = np.broadcast_to(rows[:, None, :], (h, w, 3)).round().astype(np.uint8)
    img = Image.fromarray(arr)
    lab = np.full((h, w), SKY, np.uint8)
    lab[hz:] = GROUND
    labels = Image.fromarray(lab)
    rng = np.random.default_rng([zlib.crc32(f"{name}|{viewpoint}|{w}x{h}".encode()), variant])
    d = _Layered(img, labels)
    for i, deco in enumerate(bg["decor"]):
        d.label = 2 + i
        DECOR[deco](d, rng, w, h, hz)
    out = np.asarray(img), np.asarray(labels)
    for a in out:
        a.flags.writeable = False
    return out


def layers(name: str, viewpoint: str, w: int, h: int, variant: int) -> np.ndarray:
    """(h, w) uint8 label map of `background(...)` (labels as in layer_names; lighting changes none)."""
    return _drawn(name, viewpoint, w, h, variant)[1]


@functools.lru_cache(maxsize=1024)
def background(name: str, viewpoint: str, lighting: str, w: int, h: int, variant: int) -> np.ndarray:
    """(h, w, 3) uint8, read-only (callers copy)."""
    arr = _drawn(name, viewpoint, w, h, variant)[0].astype(float)
    light = vocab()["lightings"][lighting]
    grey = arr.mean(axis=2, keepdims=True)
    arr = arr + (grey - arr) * float(light["desaturate"])
    arr = arr * np.asarray(light["gain"], float)[None, None, :]
    out = np.clip(arr.round(), 0, 255).astype(np.uint8)
    out.flags.writeable = False
    return out


# Decorations. Sky decorations draw only when there is sky (hz > 0); ground ones cover the ground band.
def _clouds(d, rng, w, h, hz):
    for _ in range(int(rng.integers(2, 5))):
        if hz < h * 0.15:
            return
        cx, cy = rng.uniform(0, w), rng.uniform(hz * 0.1, hz * 0.6)
        s = rng.uniform(0.05, 0.09) * w
        for dx, dy, k in ((-s, 0, 0.8), (0, -s * 0.35, 1.0), (s, 0, 0.8)):
            r = s * k
            d.ellipse([cx + dx - r, cy + dy - r * 0.6, cx + dx + r, cy + dy + r * 0.6], fill=(246, 248, 252))


def _grass(d, rng, w, h, hz):
    n = int((h - hz) * w / 90)
    xs, ys = rng.uniform(0, w, n), rng.uniform(hz + 2, h, n)
    for x, y in zip(xs, ys):
        d.line([(x, y), (x + 1, y - 3)], fill=(40, 110, 35), width=1)


def _sea(d, rng, w, h, hz):
    if hz <= 0:
        return
    band = max(3, int((h - hz) * 0.3))
    d.rectangle([0, hz, w, hz + band], fill=(40, 120, 200))
    for _ in range(int(w / 12)):
        x, y = rng.uniform(0, w), rng.uniform(hz + 2, hz + band - 1)
        d.line([(x, y), (x + 6, y)], fill=(220, 235, 250), width=1)


def _ripples(d, rng, w, h, hz):
    for _ in range(int((h - hz) * w / 700) + 1):
        x, y = rng.uniform(0, w), rng.uniform(hz + (h - hz) * 0.35, h)
        d.arc([x, y, x + 18, y + 6], 200, 340, fill=(200, 170, 110), width=1)


def _buildings(d, rng, w, h, hz):
    if hz <= h * 0.1:
        return
    x = -rng.uniform(0, 20)
    while x < w:
        bw, bh = rng.uniform(0.08, 0.16) * w, rng.uniform(0.25, 0.8) * hz
        shade = int(rng.integers(70, 120))
        d.rectangle([x, hz - bh, x + bw, hz], fill=(shade, shade, shade + 10))
        for wy in np.arange(hz - bh + 4, hz - 4, 7):
            for wx in np.arange(x + 3, x + bw - 4, 6):
                d.rectangle([wx, wy, wx + 2, wy + 3], fill=(235, 220, 140))
        x += bw + rng.uniform(1, 6)


def _road(d, rng, w, h, hz):
    y = hz + (h - hz) * 0.55
    off = rng.uniform(0, 20)
    for x in np.arange(-off, w, 22):
        d.rectangle([x, y - 1, x + 11, y + 1], fill=(240, 240, 240))
    d.line([(0, hz + (h - hz) * 0.12), (w, hz + (h - hz) * 0.12)], fill=(170, 170, 170), width=2)


def _stars(d, rng, w, h, hz):
    n = int(w * hz / 250)
    for x, y in zip(rng.uniform(0, w, n), rng.uniform(0, hz, n)):
        d.point((x, y), fill=(255, 255, 230))


def _moon(d, rng, w, h, hz):
    if hz < h * 0.3:
        return
    cx, cy, r = rng.uniform(0.15, 0.85) * w, rng.uniform(0.25, 0.5) * hz, 0.05 * w
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(245, 240, 200))


def _hills(d, rng, w, h, hz):
    x = -rng.uniform(0, 30)
    while x < w:
        r = rng.uniform(0.12, 0.25) * w
        d.ellipse([x, hz - r * 0.25, x + 2 * r, hz + r * 0.4], fill=(22, 34, 30))
        x += r * 1.3


def _window(d, rng, w, h, hz):
    if hz < h * 0.3:
        return
    x0, y0 = rng.uniform(0.1, 0.6) * w, hz * 0.2
    ww, wh = 0.22 * w, 0.5 * hz
    d.rectangle([x0, y0, x0 + ww, y0 + wh], fill=(160, 200, 235), outline=(250, 250, 250), width=3)
    d.line([(x0 + ww / 2, y0), (x0 + ww / 2, y0 + wh)], fill=(250, 250, 250), width=2)


def _planks(d, rng, w, h, hz):
    for y in np.arange(hz + 6, h, 12):
        d.line([(0, y), (w, y)], fill=(110, 72, 40), width=1)
        for x in np.arange(rng.uniform(0, 40), w, 48):
            d.line([(x, y), (x, y + 12)], fill=(110, 72, 40), width=1)


def _sun(d, rng, w, h, hz):
    if hz < h * 0.3:
        return
    cx, cy, r = rng.uniform(0.1, 0.9) * w, rng.uniform(0.2, 0.45) * hz, 0.06 * w
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(255, 235, 150))


def _dunes(d, rng, w, h, hz):
    for _ in range(int((h - hz) * w / 2500) + 2):
        x, y, r = rng.uniform(-20, w), rng.uniform(hz, h), rng.uniform(0.1, 0.25) * w
        d.chord([x, y, x + 2 * r, y + r * 0.5], 180, 360, fill=(245, 190, 110))


def _pines(d, rng, w, h, hz):
    if hz <= 0:
        return
    x = -rng.uniform(0, 10)
    while x < w:
        th, tw = rng.uniform(0.15, 0.35) * max(hz, 20), rng.uniform(8, 14)
        d.polygon([(x, hz), (x + tw / 2, hz - th), (x + tw, hz)], fill=(30, 75, 40))
        x += tw * rng.uniform(0.6, 1.4)


def _snow(d, rng, w, h, hz):
    n = int((h - hz) * w / 120)
    for x, y in zip(rng.uniform(0, w, n), rng.uniform(hz, h, n)):
        d.point((x, y), fill=(200, 208, 225))


DECOR = {
    "clouds": _clouds, "grass": _grass, "sea": _sea, "ripples": _ripples, "buildings": _buildings,
    "road": _road, "stars": _stars, "moon": _moon, "hills": _hills, "window": _window, "planks": _planks,
    "sun": _sun, "dunes": _dunes, "pines": _pines, "snow": _snow,
}


def pick_scene(rng: np.random.Generator) -> dict:
    """The scene part of a grounding: background, lighting, viewpoint, mood (+ a variant). What the frames
    show of it (colour, ground, decorations) is added by the renderer from the drawn pixels (backdrop.py)."""
    from acd.synth import pick

    v = vocab()
    name = pick(rng, sorted(v["backgrounds"]))
    bg = v["backgrounds"][name]
    lighting = pick(rng, bg["lightings"])
    viewpoint = pick(rng, bg["viewpoints"])
    mood = pick(rng, v["lightings"][lighting]["moods"])
    return {"background": name, "lighting": lighting,
            "viewpoint": viewpoint, "mood": mood, "_variant": int(rng.integers(VARIANTS))}
