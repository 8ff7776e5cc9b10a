"""Object sprites: each category is a few filled primitives, drawn as RGBA with a dark outline.

A drawer paints into four masks (roles): "main" takes the object's colour (and its stripes or spots),
"dark" is fixed near-black/brown detail (wheels, trunk, eyes), "light" fixed white detail (windows,
highlights, sails) and "accent" fixed yellow/orange (flower centre, beak). So the object's named colour is
always the colour of its largest part, and the outline keeps it visible on any background.
Pillow's drawing is integer rasterisation, so a sprite is the same pixels on every machine.
"""
from __future__ import annotations

import math

from PIL import Image, ImageChops, ImageDraw, ImageFilter

ROLE_RGB = {"dark": (60, 40, 25), "light": (250, 250, 250), "accent": (250, 200, 30)}
OUTLINE_RGB = (20, 20, 20)


def _star(cx, cy, r_out, r_in, n=5, rot=-90.0):
    pts = []
    for k in range(2 * n):
        r = r_out if k % 2 == 0 else r_in
        a = math.radians(rot + k * 180.0 / n)
        pts.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return pts


# Each drawer gets the role masks' ImageDraw objects (d["main"], ...) and the box size w x h; coordinates
# are written as fractions of the box (x(w), y(h) helpers) so one drawer serves every size.
def ball(d, w, h):
    d["main"].ellipse([0, 0, w - 1, h - 1], fill=255)
    d["light"].ellipse([w * 0.22, h * 0.18, w * 0.42, h * 0.36], fill=255)


def box(d, w, h):
    k = 0.25  # depth of the top / side faces
    d["main"].polygon([(0, h * k), (w * (1 - k), h * k), (w * (1 - k), h - 1), (0, h - 1)], fill=255)
    d["main"].polygon([(0, h * k), (w * k, 0), (w - 1, 0), (w * (1 - k), h * k)], fill=255)
    d["main"].polygon([(w * (1 - k), h * k), (w - 1, 0), (w - 1, h * (1 - k)), (w * (1 - k), h - 1)], fill=255)
    lw = max(1, round(w / 40))
    d["dark"].line([(0, h * k), (w * (1 - k), h * k), (w - 1, 0)], fill=255, width=lw)
    d["dark"].line([(w * (1 - k), h * k), (w * (1 - k), h - 1)], fill=255, width=lw)


def star(d, w, h):
    d["main"].polygon(_star(w / 2, h * 0.53, min(w, h) * 0.5, min(w, h) * 0.2), fill=255)


def tree(d, w, h):
    d["dark"].rectangle([w * 0.42, h * 0.6, w * 0.58, h - 1], fill=255)
    d["main"].ellipse([0, 0, w - 1, h * 0.72], fill=255)


def house(d, w, h):
    d["main"].rectangle([w * 0.1, h * 0.45, w * 0.9, h - 1], fill=255)
    d["dark"].polygon([(0, h * 0.47), (w / 2, 0), (w - 1, h * 0.47)], fill=255)
    d["dark"].rectangle([w * 0.42, h * 0.68, w * 0.6, h - 1], fill=255)
    d["light"].rectangle([w * 0.18, h * 0.55, w * 0.34, h * 0.7], fill=255)


def car(d, w, h):
    d["main"].rounded_rectangle([0, h * 0.38, w - 1, h * 0.82], radius=max(1, h * 0.12), fill=255)
    d["main"].polygon([(w * 0.2, h * 0.4), (w * 0.3, h * 0.04), (w * 0.68, h * 0.04), (w * 0.8, h * 0.4)], fill=255)
    d["light"].polygon([(w * 0.28, h * 0.38), (w * 0.34, h * 0.12), (w * 0.48, h * 0.12), (w * 0.48, h * 0.38)], fill=255)
    d["light"].polygon([(w * 0.52, h * 0.38), (w * 0.52, h * 0.12), (w * 0.65, h * 0.12), (w * 0.73, h * 0.38)], fill=255)
    r = h * 0.2
    for cx in (w * 0.24, w * 0.76):
        d["dark"].ellipse([cx - r, h - 1 - 2 * r, cx + r, h - 1], fill=255)


def flower(d, w, h):
    d["dark"].line([(w / 2, h * 0.45), (w / 2, h - 1)], fill=255, width=max(1, round(w / 10)))
    cx, cy, r = w / 2, w / 2, w * 0.22
    for k in range(5):
        a = math.radians(-90 + 72 * k)
        px, py = cx + r * math.cos(a), cy + r * math.sin(a)
        d["main"].ellipse([px - r, py - r, px + r, py + r], fill=255)
    d["accent"].ellipse([cx - r * 0.7, cy - r * 0.7, cx + r * 0.7, cy + r * 0.7], fill=255)


def cat(d, w, h):
    d["main"].ellipse([w * 0.25, h * 0.42, w * 0.92, h - 1], fill=255)  # body
    d["main"].ellipse([w * 0.02, h * 0.18, w * 0.4, h * 0.66], fill=255)  # head
    d["main"].polygon([(w * 0.04, h * 0.3), (w * 0.07, 0), (w * 0.2, h * 0.22)], fill=255)  # ears
    d["main"].polygon([(w * 0.22, h * 0.22), (w * 0.35, 0), (w * 0.38, h * 0.3)], fill=255)
    d["main"].line([(w * 0.88, h * 0.7), (w * 0.98, h * 0.35), (w * 0.93, h * 0.12)], fill=255,
                   width=max(2, round(w / 16)))  # tail
    for ex in (0.13, 0.27):
        d["light"].ellipse([w * (ex - 0.035), h * 0.34, w * (ex + 0.035), h * 0.43], fill=255)


def fish(d, w, h):
    d["main"].ellipse([0, h * 0.12, w * 0.76, h * 0.88], fill=255)
    d["main"].polygon([(w * 0.68, h / 2), (w - 1, h * 0.08), (w - 1, h * 0.92)], fill=255)
    d["dark"].ellipse([w * 0.13, h * 0.35, w * 0.21, h * 0.47], fill=255)


def bird(d, w, h):
    d["main"].ellipse([w * 0.18, h * 0.3, w - 1, h * 0.95], fill=255)  # body
    d["main"].ellipse([w * 0.06, h * 0.1, w * 0.4, h * 0.55], fill=255)  # head
    d["main"].polygon([(w * 0.4, h * 0.55), (w * 0.75, 0), (w * 0.85, h * 0.55)], fill=255)  # wing
    d["accent"].polygon([(w * 0.08, h * 0.28), (0, h * 0.36), (w * 0.08, h * 0.42)], fill=255)  # beak
    d["dark"].ellipse([w * 0.16, h * 0.24, w * 0.23, h * 0.33], fill=255)


def kite(d, w, h):
    pts = [(w / 2, 0), (w - 1, h * 0.3), (w / 2, h * 0.72), (0, h * 0.3)]
    d["main"].polygon(pts, fill=255)
    lw = max(1, round(w / 30))
    d["dark"].line([(w / 2, 0), (w / 2, h * 0.72)], fill=255, width=lw)
    d["dark"].line([(0, h * 0.3), (w - 1, h * 0.3)], fill=255, width=lw)
    d["dark"].line([(w / 2, h * 0.72), (w * 0.35, h * 0.86), (w * 0.55, h - 1)], fill=255, width=lw)


def umbrella(d, w, h):
    d["main"].pieslice([0, 0, w - 1, h * 1.1], 180, 360, fill=255)
    lw = max(2, round(w / 18))
    d["dark"].line([(w / 2, h * 0.5), (w / 2, h * 0.9)], fill=255, width=lw)
    d["dark"].arc([w * 0.5, h * 0.78, w * 0.7, h - 1], 0, 180, fill=255, width=lw)


def heart(d, w, h):
    r = w * 0.27
    d["main"].ellipse([w * 0.02, 0, w * 0.02 + 2 * r, 2 * r], fill=255)
    d["main"].ellipse([w * 0.98 - 2 * r, 0, w * 0.98, 2 * r], fill=255)
    d["main"].polygon([(w * 0.02, r * 1.1), (w * 0.98, r * 1.1), (w / 2, h - 1)], fill=255)


def balloon(d, w, h):
    d["main"].ellipse([0, 0, w - 1, h * 0.7], fill=255)
    d["main"].polygon([(w * 0.42, h * 0.74), (w / 2, h * 0.68), (w * 0.58, h * 0.74)], fill=255)
    d["dark"].line([(w / 2, h * 0.74), (w * 0.4, h * 0.87), (w / 2, h - 1)], fill=255, width=1)
    d["light"].ellipse([w * 0.2, h * 0.1, w * 0.35, h * 0.22], fill=255)


def boat(d, w, h):
    d["main"].polygon([(0, h * 0.62), (w - 1, h * 0.62), (w * 0.82, h - 1), (w * 0.18, h - 1)], fill=255)
    d["dark"].line([(w * 0.5, 0), (w * 0.5, h * 0.62)], fill=255, width=max(1, round(w / 40)))
    d["light"].polygon([(w * 0.53, h * 0.04), (w * 0.53, h * 0.56), (w * 0.88, h * 0.56)], fill=255)
    d["light"].polygon([(w * 0.47, h * 0.12), (w * 0.47, h * 0.56), (w * 0.2, h * 0.56)], fill=255)


def cup(d, w, h):
    d["main"].polygon([(0, 0), (w * 0.72, 0), (w * 0.64, h - 1), (w * 0.08, h - 1)], fill=255)
    d["main"].ellipse([w * 0.56, h * 0.2, w - 1, h * 0.72], outline=255, width=max(2, round(w / 9)))
    d["dark"].line([(0, 0), (w * 0.72, 0)], fill=255, width=max(1, round(h / 20)))


DRAWERS = {f.__name__: f for f in (ball, box, star, tree, house, car, flower, cat, fish, bird, kite, umbrella,
                                   heart, balloon, boat, cup)}


def pattern_rgb(rgb) -> tuple[int, int, int]:
    """The stripe / spot colour: a darker shade of a light colour, a lighter shade of a dark one, so the
    object still reads as its named colour."""
    lum = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    if lum > 110:
        return tuple(int(c * 0.62) for c in rgb)
    return tuple(int(c + (255 - c) * 0.45) for c in rgb)


def make_sprite(shape: str, rgb, pattern: str, w: int, h: int) -> Image.Image:
    """An RGBA sprite of exactly (w + 2) x (h + 2) pixels: the drawing plus a 1-pixel outline margin."""
    W, H = w + 2, h + 2
    masks = {r: Image.new("L", (W, H), 0) for r in ("main", "dark", "light", "accent")}
    # Draw with a 1-pixel offset so the outline (a dilation of the union) fits inside the sprite.
    draws = {}
    for r, m in masks.items():
        dr = ImageDraw.Draw(m)
        draws[r] = _Offset(dr, 1, 1)
    DRAWERS[shape](draws, w, h)
    union = ImageChops.lighter(ImageChops.lighter(masks["main"], masks["dark"]),
                               ImageChops.lighter(masks["light"], masks["accent"]))
    sprite = Image.new("RGBA", (W, H), (0, 0, 0, 0))
    sprite.paste(OUTLINE_RGB + (255,), mask=union.filter(ImageFilter.MaxFilter(3)))
    fill = Image.new("RGBA", (W, H), tuple(rgb) + (255,))
    if pattern != "plain":
        fd = ImageDraw.Draw(fill)
        shade = pattern_rgb(rgb) + (255,)
        step = max(4, min(W, H) // 5)
        if pattern == "striped":
            for y0 in range(step // 2, H, step):
                fd.rectangle([0, y0, W, y0 + max(1, step // 2 - 1)], fill=shade)
        else:  # spotted
            r = max(1, step // 4)
            for j, y0 in enumerate(range(step // 2, H, step)):
                for x0 in range(step // 2 + (step // 2 if j % 2 else 0), W, step):
                    fd.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], fill=shade)
    sprite.paste(fill, mask=masks["main"])
    for role in ("dark", "light", "accent"):
        sprite.paste(ROLE_RGB[role] + (255,), mask=masks[role])
    return sprite


class _Offset:
    """An ImageDraw proxy that shifts every coordinate by (dx, dy)."""

    def __init__(self, draw: ImageDraw.ImageDraw, dx: float, dy: float):
        self.draw, self.dx, self.dy = draw, dx, dy

    def _xy(self, xy):
        if len(xy) == 4 and not isinstance(xy[0], (tuple, list)):
            x0, y0, x1, y1 = xy
            return [x0 + self.dx, y0 + self.dy, x1 + self.dx, y1 + self.dy]
        return [(x + self.dx, y + self.dy) for x, y in xy]

    def __getattr__(self, name):
        fn = getattr(self.draw, name)
        return lambda xy, *a, **k: fn(self._xy(xy), *a, **k)
