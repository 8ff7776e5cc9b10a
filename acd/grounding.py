"""The grounding contract: what a source that knows the truth says about a media item.

Stored as canonical JSON in media.grounding. The synthetic source fills it exactly; real sources leave it
null (then content instructions come from an instruction-writer model). The grounded backend writes every
caption from these facts alone, so every field named here must be true of the rendered media.

Positions use a 3x3 grid named: "top left", "top", "top right", "left", "center", "right",
"bottom left", "bottom", "bottom right". Boxes are [x0, y0, x1, y1] in 0..1 image coordinates.

Image example::

    {"kind": "image",
     "scene": {"background": "meadow", "background_colour": "green", "lighting": "bright daylight",
               "viewpoint": "eye level", "mood": "calm",
               "decorations": ["white clouds", "blades of grass"]},   # what the backdrop shows, in words
     "objects": [
        {"id": "o1", "category": "ball", "colour": "red", "size": "small", "position": "top left",
         "bbox": [0.05, 0.08, 0.21, 0.26], "attributes": ["round", "shiny"]},
        ...]}

Video example (all image fields, plus time)::

    {"kind": "video", "duration_s": 3.0, "fps": 8,
     "scene": {..., "background": "city street"},
     "camera": {"motion": "pan left", "speed": "slow"},   # static | pan left | pan right | tilt up |
                                                           # tilt down | zoom in | zoom out
     "objects": [
        {"id": "o1", "category": "car", "colour": "blue", "size": "large",
         "position": "left",               # where it is when first seen
         "end_position": "right",
         "action": "moves from left to right", "speed": "fast", "attributes": [...]}, ...],
     "events": [{"t": 0.0, "type": "appear", "objects": ["o1"]},
                {"t": 1.4, "type": "collide", "objects": ["o1", "o2"]},
                {"t": 2.6, "type": "leave", "objects": ["o2"]}]}

Audio example::

    {"kind": "audio", "duration_s": 4.0, "sample_rate": 16000,
     "scene": {"background": "low hum", "mood": "busy"},      # background: silence | low hum | rain-like noise | wind
     "sounds": [
        {"id": "s1", "source": "bell", "category": "tonal", "start": 0.2, "end": 1.1,
         "pitch": "high", "loudness": "loud", "pattern": "three rings"}, ...],
     "events": [{"t": 0.2, "type": "start", "sounds": ["s1"]}, {"t": 1.1, "type": "stop", "sounds": ["s1"]}]}

Notes fixed by the synthetic source (acd/synth): video objects also carry `bbox` (the box when first
seen); `camera.speed` is null when the motion is static; the colliding pair's actions are "moves to the
right" / "moves to the left" and they stop on contact; audio event types are `start` and `stop`.
`acd.synth.validate.problems(grounding)` checks a grounding's structure and internal consistency.
"""
from __future__ import annotations

import json
from typing import Any

POSITIONS = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)


def position_of(cx: float, cy: float) -> str:
    """Grid name of a point in 0..1 coordinates."""
    col = 0 if cx < 1 / 3 else (1 if cx < 2 / 3 else 2)
    row = 0 if cy < 1 / 3 else (1 if cy < 2 / 3 else 2)
    return POSITIONS[row * 3 + col]


def parse(grounding: str | None) -> dict[str, Any] | None:
    return json.loads(grounding) if grounding else None
