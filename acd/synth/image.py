"""Synthetic images: 1-5 objects of distinct categories on a background, JPEG, with exact grounding.

Placement: each object gets its own 3x3 grid cell and its centre is drawn inside that cell (with a
margin), boxes may overlap by at most 10% of the smaller one (so nothing named is hidden). The recorded
bbox is the sprite's actual opaque extent, and position / size are recomputed from it, so the grounding is
true of the pixels by construction, not by intention. The scene's colour, ground and decorations are read
from the finished picture around the objects (acd/synth/backdrop.py).
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from acd.grounding import POSITIONS, position_of
from acd.synth import pick, r3, rng_for, size_label, uniform, vocab
from acd.synth.backdrop import BackdropTally
from acd.synth.scene import background, layers, pick_scene
from acd.synth.shapes import make_sprite

MAX_OVERLAP = 0.10  # of the smaller box's area
CELL_MARGIN = 0.03  # keep centres this far inside their cell, so the named position is unambiguous


def choose_colour(rng, cat: dict, avoid: list[str]) -> str:
    allowed = [c for c in (cat.get("colours") or list(vocab()["colours"])) if c not in avoid]
    return pick(rng, allowed or cat.get("colours") or list(vocab()["colours"]))


def choose_pattern(rng, cat: dict) -> str:
    return pick(rng, vocab()["patterns"]) if cat.get("patterns") else "plain"


def sprite_size(aspect: float, extent: float, W: int, H: int) -> tuple[int, int]:
    """Drawn width/height in pixels so that sqrt(w/W * h/H) == extent with w/h == aspect (in pixels)."""
    area = extent * extent * W * H
    h = max(6, int(round((area / aspect) ** 0.5)))
    return max(6, int(round(h * aspect))), h


def attributes_of(cat: dict, pattern: str) -> list[str]:
    return list(cat["attributes"]) + ([pattern] if pattern != "plain" else [])


def _overlap(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / smaller if smaller > 0 else 0.0


def render_image(seed: int, index: int) -> tuple[bytes, dict, dict]:
    """(jpeg bytes, grounding dict, probe facts {width, height})."""
    v = vocab()
    rng = rng_for(seed, "image", index)
    W, H = v["image"]["size"]
    scene = pick_scene(rng)
    variant = scene.pop("_variant")
    canvas = Image.fromarray(background(scene["background"], scene["viewpoint"], scene["lighting"], W, H, variant))
    avoid = v["backgrounds"][scene["background"]]["avoid"]

    n = int(pick(rng, {int(k): w for k, w in v["image"]["objects"].items()}))
    cats = [str(c) for c in rng.permutation(sorted(v["categories"]))[:n]]
    free = list(range(9))
    objects, boxes, px_boxes = [], [], []
    for cat_name in cats:
        cat = v["categories"][cat_name]
        colour = choose_colour(rng, cat, avoid)
        pattern = choose_pattern(rng, cat)
        placed = None
        for attempt in range(40 if not objects else 12):  # the first object must find a place
            if not free:
                break
            # Later attempts fall back to smaller sizes: large objects are the ones that do not fit.
            sizes = list(v["sizes"]["image"])[: max(1, 3 - attempt // 4)]
            extent = uniform(rng, v["sizes"]["image"][pick(rng, sizes)]["extent"])
            w, h = sprite_size(cat["aspect"], extent, W, H)
            cell = free[int(rng.integers(len(free)))]
            col, row = cell % 3, cell // 3
            # Feasible centres: inside the cell (with margin) and keeping the whole sprite in the image.
            x_lo, x_hi = max(col / 3 + CELL_MARGIN, (w / 2 + 1) / W), min((col + 1) / 3 - CELL_MARGIN, 1 - (w / 2 + 1) / W)
            y_lo, y_hi = max(row / 3 + CELL_MARGIN, (h / 2 + 1) / H), min((row + 1) / 3 - CELL_MARGIN, 1 - (h / 2 + 1) / H)
            if x_lo > x_hi or y_lo > y_hi:
                continue
            cx, cy = rng.uniform(x_lo, x_hi), rng.uniform(y_lo, y_hi)
            x0, y0 = int(round(cx * W - (w + 2) / 2)), int(round(cy * H - (h + 2) / 2))
            sprite = make_sprite(cat["shape"], v["colours"][colour], pattern, w, h)
            bx0, by0, bx1, by1 = sprite.getchannel("A").getbbox()
            bbox = tuple(r3(x) for x in ((x0 + bx0) / W, (y0 + by0) / H, (x0 + bx1) / W, (y0 + by1) / H))
            if position_of((bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2) != POSITIONS[cell]:
                continue  # an asymmetric sprite pulled its box centre out of the cell
            if any(_overlap(bbox, b) > MAX_OVERLAP for b in boxes):
                continue
            placed = (sprite, x0, y0, bbox, cell)
            break
        if placed is None:
            continue  # no room: the scene simply has fewer objects (the first always fits an empty canvas)
        sprite, x0, y0, bbox, cell = placed
        free.remove(cell)
        canvas.paste(sprite, (x0, y0), sprite)
        boxes.append(bbox)
        px_boxes.append((x0 + bx0, y0 + by0, x0 + bx1, y0 + by1))
        objects.append({
            "id": f"o{len(objects) + 1}", "category": cat_name, "colour": colour,
            "size": size_label(((bbox[2] - bbox[0]) * (bbox[3] - bbox[1])) ** 0.5, "image"),
            "position": POSITIONS[cell], "bbox": list(bbox),
            "attributes": attributes_of(cat, pattern),
        })
    # What the backdrop shows around the objects, read from the finished picture (before JPEG, which only
    # blurs it): the colour a caption names and the decorations in view.
    tally = BackdropTally(scene["background"])
    tally.add(np.asarray(canvas), layers(scene["background"], scene["viewpoint"], W, H, variant), px_boxes)
    scene.update(tally.scene_fields())
    buf = io.BytesIO()
    # Baseline, fixed quality and subsampling, no EXIF/ICC: the bytes depend on the pixels only.
    canvas.save(buf, format="JPEG", quality=int(v["image"]["jpeg_quality"]), subsampling="4:2:0", optimize=False)
    grounding = {"kind": "image", "scene": scene, "objects": objects}
    return buf.getvalue(), grounding, {"width": W, "height": H}
