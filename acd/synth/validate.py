"""Checks that a grounding dict has the shape acd/grounding.py describes and is internally consistent.

`problems(g)` returns a list of human-readable problems (empty = fine). It checks structure and value
domains, and the facts that must agree with each other: a box's centre is in the named grid cell, the size
class matches the box, times lie inside the clip, events name existing objects / sounds, a mover's named
direction matches its start and end positions, sounds do not overlap. Pixel-level truth is checked by the
tests (tests/test_synthetic.py), which decode the files.
"""
from __future__ import annotations

from typing import Any

from acd.grounding import POSITIONS, position_of
from acd.synth import size_label, vocab

SCENE_KEYS = {"background", "background_colour", "lighting", "viewpoint", "mood", "decorations", "ground_visible"}
IMAGE_OBJ_KEYS = {"id", "category", "colour", "size", "position", "bbox", "attributes"}
VIDEO_OBJ_KEYS = IMAGE_OBJ_KEYS | {"end_position", "action", "speed"}
SOUND_KEYS = {"id", "source", "category", "start", "end", "pitch", "loudness", "pattern"}
CAMERA_MOTIONS = ("static", "pan left", "pan right", "tilt up", "tilt down", "zoom in", "zoom out")

# A mover's direction, as (column change sign, row change sign) between start and end position. The
# crossing actions must change cell; the colliding pair's short approach may end in the cell it began in.
MOVE_DIRECTION = {
    "moves from left to right": (1, 0), "moves from right to left": (-1, 0),
    "falls down": (0, 1), "rises up": (0, -1),
    "moves to the right": (1, 0), "moves to the left": (-1, 0),
}
MAY_STAY = {"moves to the right", "moves to the left"}


def _cell(pos: str) -> tuple[int, int]:
    i = POSITIONS.index(pos)
    return i % 3, i // 3


def _objects(g: dict, modality: str, out: list[str]) -> set[str]:
    v = vocab()
    ids = set()
    keys = VIDEO_OBJ_KEYS if modality == "video" else IMAGE_OBJ_KEYS
    if not g.get("objects"):
        out.append("no objects")
    for o in g.get("objects", []):
        where = f"object {o.get('id')}"
        if set(o) != keys:
            out.append(f"{where}: keys {sorted(set(o) ^ keys)} differ from the contract")
            continue
        ids.add(o["id"])
        if o["category"] not in v["categories"]:
            out.append(f"{where}: unknown category {o['category']!r}")
        if o["colour"] not in v["colours"]:
            out.append(f"{where}: unknown colour {o['colour']!r}")
        x0, y0, x1, y1 = o["bbox"]
        if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
            out.append(f"{where}: bad bbox {o['bbox']}")
        if position_of((x0 + x1) / 2, (y0 + y1) / 2) != o["position"]:
            out.append(f"{where}: bbox centre is not at {o['position']!r}")
        if size_label(((x1 - x0) * (y1 - y0)) ** 0.5, modality) != o["size"]:
            out.append(f"{where}: size {o['size']!r} does not match its bbox")
        if not isinstance(o["attributes"], list) or not all(isinstance(a, str) for a in o["attributes"]):
            out.append(f"{where}: attributes must be a list of strings")
        if modality == "video":
            if o["end_position"] not in POSITIONS:
                out.append(f"{where}: bad end_position")
            if o["speed"] not in ("slow", "fast"):
                out.append(f"{where}: bad speed {o['speed']!r}")
            acts = set(v["video"]["actions"]) | set(v["video"]["collide_actions"].values())
            if o["action"] not in acts:
                out.append(f"{where}: unknown action {o['action']!r}")
            if o["action"] in MOVE_DIRECTION:
                (c0, r0), (c1, r1) = _cell(o["position"]), _cell(o["end_position"])
                dc, dr = MOVE_DIRECTION[o["action"]]
                lo = 0 if o["action"] in MAY_STAY else 1
                if (dc and (c1 - c0) * dc < lo) or (dr and (r1 - r0) * dr < lo):
                    out.append(f"{where}: {o['action']!r} but goes {o['position']!r} -> {o['end_position']!r}")
                if (dc and r1 != r0) or (dr and c1 != c0):
                    out.append(f"{where}: {o['action']!r} leaves its lane")
    if len(ids) != len(g.get("objects", [])):
        out.append("duplicate object ids")
    return ids


def problems(g: dict[str, Any]) -> list[str]:
    out: list[str] = []
    v = vocab()
    kind = g.get("kind")
    if kind in ("image", "video"):
        scene = g.get("scene", {})
        if set(scene) != SCENE_KEYS:
            out.append(f"scene keys {sorted(scene)} differ from the contract")
        elif scene["background"] not in v["backgrounds"] or scene["lighting"] not in v["lightings"] \
                or scene["viewpoint"] not in v["viewpoints"] \
                or scene["background_colour"] not in v["backdrop"]["palette"]:
            out.append(f"scene has an unknown value: {scene}")
        elif not scene["ground_visible"] and any(
                v["decorations"][d].get("ground") for d in v["decorations"]
                if v["decorations"][d]["words"] in scene["decorations"]):
            out.append(f"a ground decoration is named while the ground is out of view: {scene}")
        ids = _objects(g, kind, out)
        if kind == "video":
            dur = g["duration_s"]
            if g["camera"].get("motion") not in CAMERA_MOTIONS:
                out.append(f"bad camera {g['camera']}")
            if (g["camera"]["motion"] == "static") != (g["camera"]["speed"] is None):
                out.append("camera speed must be null exactly when the camera is static")
            ts = [e["t"] for e in g["events"]]
            if ts != sorted(ts):
                out.append("events are not in time order")
            seen = set()
            for e in g["events"]:
                if not 0 <= e["t"] < dur:
                    out.append(f"event at {e['t']} outside 0..{dur}")
                if e["type"] not in ("appear", "collide", "leave") or not set(e["objects"]) <= ids:
                    out.append(f"bad event {e}")
                if e["type"] == "appear":
                    seen |= set(e["objects"])
                elif e["type"] == "collide" and len(e["objects"]) != 2:
                    out.append(f"a collision needs two objects: {e}")
            if seen != ids:
                out.append("every object must have exactly one appear event")
    elif kind == "audio":
        dur, sounds = g["duration_s"], g.get("sounds", [])
        if not sounds:
            out.append("no sounds")
        if g["scene"]["background"] not in v["audio"]["backgrounds"]:
            out.append(f"unknown audio background {g['scene']['background']!r}")
        prev_end = -1.0
        for s in sounds:
            if set(s) != SOUND_KEYS:
                out.append(f"sound {s.get('id')}: keys differ from the contract")
                continue
            if s["source"] not in v["audio"]["sounds"] or s["pitch"] not in ("high", "low") \
                    or s["loudness"] not in v["audio"]["loudness"]:
                out.append(f"sound {s['id']}: unknown value")
            if not (0 <= s["start"] < s["end"] <= dur):
                out.append(f"sound {s['id']}: times {s['start']}..{s['end']} outside 0..{dur}")
            if s["start"] < prev_end:
                out.append(f"sound {s['id']}: overlaps the previous one")
            prev_end = s["end"]
        ids = {s["id"] for s in sounds}
        want = sorted([(s["start"], "start", s["id"]) for s in sounds] + [(s["end"], "stop", s["id"]) for s in sounds])
        got = sorted((e["t"], e["type"], e["sounds"][0]) for e in g["events"])
        if want != got or any(not set(e["sounds"]) <= ids for e in g["events"]):
            out.append("events do not match the sounds' start / end times")
    else:
        out.append(f"unknown kind {kind!r}")
    return out
