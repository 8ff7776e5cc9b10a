"""Synthetic videos: moving objects over a background world seen through a moving camera; MP4 / H.264.

How truth is kept: every object's trajectory is planned in *frame* coordinates (0..1 of the view), with
conservative boxes used to keep objects apart and inside the frame; then each frame is rendered and the
sprite's real opaque box is measured. Positions, sizes, appear / leave times in the grounding are read
back from those measured boxes, so they are true of the pixels even where the plan was approximate; an
object counts as in view in a frame only when enough of its box is inside it (VISIBLE). What the backdrop
shows (its colour, the ground, decorations) is read from the frames too (acd/synth/backdrop.py).

Camera: the background is a world `world_scale` times larger than the view; pan / tilt slide the view
window across it, zoom shrinks / grows the window. Movers ("moves from left to right", "falls down", the
colliding pair) are planned in the frame, so their named direction is what the viewer sees; in-place
actions (bounces, spins, grows, shrinks) are anchored in the world, so under a moving camera they drift in
the frame like the background does (their end_position says where they ended up). Zoom scales every object.

Determinism: RGB -> YUV 4:2:0 is done here in integer numpy (no swscale, whose SIMD paths are not
bit-exact across CPUs), x264 runs single-threaded, and nothing time-dependent is written to the file.
"""
from __future__ import annotations

import os
import tempfile

import av
import numpy as np
from PIL import Image

from acd.grounding import position_of
from acd.synth import pick, r3, rng_for, size_label, uniform, vocab
from acd.synth.image import attributes_of, choose_colour, choose_pattern, sprite_size
from acd.synth.backdrop import BackdropTally
from acd.synth.scene import background, layers, pick_scene
from acd.synth.shapes import make_sprite

EDGE = 0.015  # keep planned boxes this far inside the frame / away from grid lines
# An object is in view in a frame when at least this share of its box is inside the frame. A sliver at the
# edge (a wheel, the tip of a tail) is nothing a viewer can name, while a third of an object is: so its
# appear time is its first frame in view, a leave event's time is its first frame out of view (what is
# left is at most a sliver), and its start / end places are where it can be seen.
VISIBLE = 0.3
TRIES = 15


# ---------------------------------------------------------------------------------------------- camera
def camera_windows(motion: str, speed: str | None, N: int, W: int, H: int, WW: int, WH: int) -> np.ndarray:
    """(N, 4) view windows [x0, y0, x1, y1] in world pixels, one per frame."""
    amount = vocab()["video"]["camera"]["amount"].get(speed or "slow")
    u = np.linspace(0.0, 1.0, N)
    cx, cy = np.full(N, WW / 2), np.full(N, WH / 2)
    ww, wh = np.full(N, float(W)), np.full(N, float(H))
    if motion.startswith("pan"):
        sign = 1.0 if motion == "pan right" else -1.0  # panning right slides the window to the right
        cx = cx + sign * (u - 0.5) * amount["pan"] * W
    elif motion.startswith("tilt"):
        sign = -1.0 if motion == "tilt up" else 1.0  # tilting up moves the window up (smaller y)
        cy = cy + sign * (u - 0.5) * amount["pan"] * H
    elif motion.startswith("zoom"):
        z0, z1 = (amount["zoom"], 1.0) if motion == "zoom in" else (1.0, amount["zoom"])
        z = z0 + (z1 - z0) * u  # window size relative to the view: shrinking window = zooming in
        ww, wh = W * z, H * z
    return np.stack([cx - ww / 2, cy - wh / 2, cx + ww / 2, cy + wh / 2], axis=1)


def project(win: np.ndarray, fx: float, fy: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame positions over time of a point fixed in the world that is at (fx, fy) in frame 0, and the
    zoom factor (object scale relative to frame 0)."""
    w0, h0 = win[0, 2] - win[0, 0], win[0, 3] - win[0, 1]
    px, py = win[0, 0] + fx * w0, win[0, 1] + fy * h0
    ww, wh = win[:, 2] - win[:, 0], win[:, 3] - win[:, 1]
    return (px - win[:, 0]) / ww, (py - win[:, 1]) / wh, w0 / ww


# ------------------------------------------------------------------------------------------ planning
class Plan:
    """One object's per-frame centre (frame coords), scale, rotation and first visible frame."""

    def __init__(self, N):
        self.cx, self.cy = np.zeros(N), np.zeros(N)
        self.scale, self.angle = np.ones(N), np.zeros(N)
        self.start = 0  # first frame drawn (late appearance)
        self.clip = False  # may leave the frame (movers that exit)

    def boxes(self, w: float, h: float, spin: bool) -> np.ndarray:
        """Conservative (N, 4) boxes in frame coords; a spinning sprite takes its circumscribed square."""
        bw, bh = (w * self.scale, h * self.scale)
        if spin:
            d = np.hypot(bw, bh)
            bw, bh = d, d
        return np.stack([self.cx - bw / 2, self.cy - bh / 2, self.cx + bw / 2, self.cy + bh / 2], axis=1)


def _cell_range(k: int, half: float) -> tuple[float, float]:
    """Centre range inside grid column/row k (0..2) that also keeps a half-extent `half` inside 0..1."""
    return max(k / 3 + EDGE, half + EDGE), min((k + 1) / 3 - EDGE, 1 - half - EDGE)


def plan_mover(rng, action: dict, N: int, fps: int, hw: float, hh: float, leave: bool) -> Plan | None:
    """Linear (or, for falls, accelerating) travel across the frame along action['dir']."""
    p = Plan(N)
    dx, dy = action["dir"]
    axis_half, cross_half = (hw, hh) if dx else (hh, hw)
    s_lo, s_hi = _cell_range(0 if (dx + dy) > 0 else 2, axis_half)
    e_lo, e_hi = _cell_range(2 if (dx + dy) > 0 else 0, axis_half)
    lane = int(rng.integers(3))
    c_lo, c_hi = _cell_range(lane, cross_half)
    if s_lo > s_hi or e_lo > e_hi or c_lo > c_hi:
        return None
    s, cross = rng.uniform(s_lo, s_hi), rng.uniform(c_lo, c_hi)
    u = np.linspace(0.0, 1.0, N)
    prog = u * u if dy > 0 else u  # things fall faster and faster
    if leave:
        # Fully out (1 px past the edge) at progress ux; travel continues, so it stays out.
        ux = rng.uniform(0.55, 0.85)
        out = 1 + axis_half + 0.01 if (dx + dy) > 0 else -axis_half - 0.01
        e = s + (out - s) / (ux * ux if dy > 0 else ux)
        p.clip = True
    else:
        e = rng.uniform(e_lo, e_hi)
    along = s + (e - s) * prog
    p.cx, p.cy = (along, np.full(N, cross)) if dx else (np.full(N, cross), along)
    p.speed_value = abs(e - s) / ((N - 1) / fps)  # frame widths (heights) per second
    return p


def plan_in_place(rng, action: dict, speed: str, N: int, fps: int, win: np.ndarray, hw: float, hh: float,
                  late: bool) -> Plan | None:
    """Bounce / spin / scale at a point anchored in the world (so it follows the camera's motion)."""
    p = Plan(N)
    t = np.arange(N) / fps
    kind = action["kind"]
    amp = rng.uniform(0.1, 0.16) if kind == "bounce" else 0.0
    # Centre well inside one grid cell (a hop stays in it too), so with a still camera the object's
    # position is one name from start to end.
    (x_lo, x_hi), (y_lo, y_hi) = _cell_range(int(rng.integers(3)), hw), _cell_range(int(rng.integers(3)), hh)
    y_lo += amp
    if x_lo + 0.02 > x_hi - 0.02 or y_lo + 0.02 > y_hi - 0.02:
        return None
    fx, fy = rng.uniform(x_lo + 0.02, x_hi - 0.02), rng.uniform(y_lo + 0.02, y_hi - 0.02)
    p.cx, p.cy, zoom = project(win, fx, fy)
    p.scale = zoom.copy()
    if late:
        p.start = int(rng.integers(max(1, N // 5), max(2, N // 2)))
    if kind == "bounce":
        freq = 1.0 if speed == "slow" else 2.0
        phase = (freq * t) % 1.0
        p.cy = p.cy - amp * 4 * phase * (1 - phase)  # parabolic hops: exact arithmetic, looks like gravity
    elif kind == "spin":
        turns = 0.5 if speed == "slow" else 1.0
        p.angle = (360.0 * turns * t * (1 if rng.random() < 0.5 else -1)) % 360.0
    elif kind == "scale":
        span = N - 1 - p.start if speed == "slow" else max(2, int((N - 1 - p.start) * 0.4))
        k = np.clip((np.arange(N) - p.start) / span, 0.0, 1.0)
        p.scale = p.scale * (action["from"] + (action["to"] - action["from"]) * k)
    return p


def plan_collision(rng, N: int, fps: int, sizes) -> tuple[Plan, Plan, int] | None:
    """Two objects on one row move toward each other and stop when they touch; returns the contact frame."""
    (w1, h1), (w2, h2) = sizes
    row = int(rng.integers(3))
    y_lo, y_hi = _cell_range(row, max(h1, h2) / 2)
    a_lo, a_hi = _cell_range(0, w1 / 2)
    b_lo, b_hi = _cell_range(2, w2 / 2)
    if y_lo > y_hi or a_lo > a_hi or b_lo > b_hi:
        return None
    y, xa, xb = rng.uniform(y_lo, y_hi), rng.uniform(a_lo, a_hi), rng.uniform(b_lo, b_hi)
    gap = (xb - w2 / 2) - (xa + w1 / 2)
    if gap <= 0:
        return None
    kc = int(rng.integers(int(N * 0.45), int(N * 0.75)))  # contact frame
    share = rng.uniform(0.35, 0.65)  # of the gap closed by the left object
    k = np.minimum(np.arange(N), kc) / kc
    pa, pb = Plan(N), Plan(N)
    overlap = 1.0 / vocab()["video"]["size"][0]  # meet with one pixel of overlap: they visibly touch
    pa.cx, pa.cy = xa + (gap * share + overlap / 2) * k, np.full(N, y)
    pb.cx, pb.cy = xb - (gap * (1 - share) + overlap / 2) * k, np.full(N, y)
    tc = kc / fps
    pa.speed_value, pb.speed_value = (gap * share) / tc, (gap * (1 - share)) / tc
    return pa, pb, kc


def _inside(b: np.ndarray, start: int) -> bool:
    b = b[start:]
    return bool((b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= 1).all() and (b[:, 3] <= 1).all())


def _apart(b1, s1, b2, s2) -> bool:
    """No frame where both are drawn and their (conservative) boxes intersect."""
    k = max(s1, s2)
    a, b = b1[k:], b2[k:]
    ix = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    iy = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
    return bool(((ix <= 0) | (iy <= 0)).all())


# ------------------------------------------------------------------------------------------ encoding
def rgb_to_yuv420(rgb: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) RGB -> (N, H*3/2, W) BT.601 limited-range YUV 4:2:0, integer arithmetic only."""
    n, h, w, _ = rgb.shape
    r, g, b = (rgb[..., i].astype(np.uint16) for i in range(3))
    y = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16  # all-positive weights: fits uint16

    def sub(c):  # chroma from the rounded 2x2 block mean, the usual 4:2:0 siting
        return ((c[:, 0::2, 0::2] + c[:, 1::2, 0::2] + c[:, 0::2, 1::2] + c[:, 1::2, 1::2] + 2) >> 2).astype(np.int32)

    rs, gs, bs = sub(r), sub(g), sub(b)
    u = ((-38 * rs - 74 * gs + 112 * bs + 128) >> 8) + 128
    v = ((112 * rs - 94 * gs - 18 * bs + 128) >> 8) + 128
    out = np.empty((n, h * 3 // 2, w), np.uint8)
    out[:, :h] = y
    out[:, h:h + h // 4] = u.reshape(n, h // 4, w)
    out[:, h + h // 4:] = v.reshape(n, h // 4, w)
    return out


# Memory-backed temp dir when there is one: the file lives for milliseconds.
_TMP = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


def encode_mp4(frames: list[np.ndarray], fps: int, crf: int, preset: str) -> bytes:
    """H.264 yuv420p MP4 with the index up front (+faststart) so browsers start playback at once.

    faststart rewrites the file after encoding, which libavformat does by reopening it by name, so this
    writes a temporary file instead of a BytesIO.
    """
    yuv = rgb_to_yuv420(np.stack(frames))
    H, W = frames[0].shape[:2]
    fd, path = tempfile.mkstemp(suffix=".mp4", prefix="acd-synth-", dir=_TMP)
    os.close(fd)
    try:
        with av.open(path, "w", format="mp4", options={"movflags": "+faststart"}) as out:
            st = out.add_stream("libx264", rate=fps, options={
                # One thread (thread scheduling must not change decisions); no B-frames and no lookahead:
                # a 20-frame clip gains little from them and they cost a third of the encode time.
                "preset": preset, "crf": str(crf), "threads": "1",
                "x264-params": "threads=1:lookahead-threads=1:sync-lookahead=0:rc-lookahead=0:bframes=0",
            })
            st.width, st.height, st.pix_fmt = W, H, "yuv420p"
            st.codec_context.thread_count = 1
            for i in range(len(frames)):
                vf = av.VideoFrame.from_ndarray(yuv[i], format="yuv420p")
                vf.pts = i
                for pkt in st.encode(vf):
                    out.mux(pkt)
            for pkt in st.encode():
                out.mux(pkt)
        with open(path, "rb") as f:
            return f.read()
    finally:
        os.unlink(path)


# ------------------------------------------------------------------------------------------- render
def _setup(seed: int, index: int):
    """The first draws of an item, which fix everything behind the objects: duration, scene, camera."""
    vv = vocab()["video"]
    rng = rng_for(seed, "video", index)
    W, H = vv["size"]
    duration = float(pick(rng, vv["durations"]))
    N = int(round(duration * int(vv["fps"])))
    WW, WH = (int(round(W * vv["world_scale"])) // 2) * 2, (int(round(H * vv["world_scale"])) // 2) * 2
    scene = pick_scene(rng)
    variant = scene.pop("_variant")
    world = Image.fromarray(background(scene["background"], scene["viewpoint"], scene["lighting"], WW, WH, variant))
    world_layers = Image.fromarray(layers(scene["background"], scene["viewpoint"], WW, WH, variant))
    motion = pick(rng, vv["camera"]["motions"])
    cam_speed = None if motion == "static" else pick(rng, ["slow", "fast"])
    win = camera_windows(motion, cam_speed, N, W, H, WW, WH)
    return rng, N, scene, world, world_layers, motion, cam_speed, win


def _view(img: Image.Image, window, zoom: bool, W: int, H: int, resample) -> Image.Image:
    """The part of the world a frame shows (a zoom resamples it, a pan or tilt crops whole pixels)."""
    x0, y0, x1, y1 = window
    if zoom:
        return img.resize((W, H), resample, box=(float(x0), float(y0), float(x1), float(y1)))
    ix, iy = int(round(x0)), int(round(y0))
    return img.crop((ix, iy, ix + W, iy + H))


def backdrop_frames(seed: int, index: int) -> list[np.ndarray]:
    """Item `index`'s frames as they are before any object is drawn (for checks that tell an object's
    pixels from the backdrop's)."""
    W, H = vocab()["video"]["size"]
    _, N, _, world, _, motion, _, win = _setup(seed, index)
    return [np.asarray(_view(world, win[k], motion.startswith("zoom"), W, H, Image.BILINEAR)) for k in range(N)]


def render_video(seed: int, index: int) -> tuple[bytes, dict, dict]:
    """(mp4 bytes, grounding dict, probe facts)."""
    v = vocab()
    vv = v["video"]
    W, H = vv["size"]
    fps = int(vv["fps"])
    rng, N, scene, world, world_layers, motion, cam_speed, win = _setup(seed, index)
    avoid = v["backgrounds"][scene["background"]]["avoid"]

    n = int(pick(rng, {int(k): w for k, w in vv["objects"].items()}))
    cats = [str(c) for c in rng.permutation(sorted(v["categories"]))[:n]]
    objs = []  # dicts: grounding fields + plan, sprite size, spin flag

    def new_obj(cat_name, size_class=None):
        cat = v["categories"][cat_name]
        size_class = size_class or pick(rng, list(v["sizes"]["video"]))
        w, h = sprite_size(cat["aspect"], uniform(rng, v["sizes"]["video"][size_class]["extent"]), W, H)
        return {"category": cat_name, "cat": cat, "colour": choose_colour(rng, cat, avoid),
                "pattern": choose_pattern(rng, cat), "w": w + 2, "h": h + 2}

    def fits(o):
        b = o["plan"].boxes(o["w"] / W, o["h"] / H, o["spin"])
        if not o["plan"].clip and not _inside(b, o["plan"].start):
            return False
        if o["plan"].clip and not _inside(b[:1], 0):  # a leaver must at least start fully inside
            return False
        return all(_apart(b, o["plan"].start, q["boxes"], q["plan"].start) for q in objs)

    events = []
    if n >= 2 and rng.random() < vv["collide_share"]:
        a, b = new_obj(cats[0], "medium"), new_obj(cats[1], "medium")
        for _ in range(TRIES):
            res = plan_collision(rng, N, fps, [(a["w"] / W, a["h"] / H), (b["w"] / W, b["h"] / H)])
            if res:
                a["plan"], b["plan"], kc = res
                for o, side in ((a, "right"), (b, "left")):
                    o.update(action=vv["collide_actions"][side], spin=False,
                             speed="fast" if o["plan"].speed_value >= vv["fast_speed"] else "slow")
                    o["boxes"] = o["plan"].boxes(o["w"] / W, o["h"] / H, False)
                    objs.append(o)
                events.append({"t": r3(kc / fps), "type": "collide", "objects": [a, b]})
                break
        cats = cats[2:] if len(objs) == 2 else cats

    for ci, cat_name in enumerate(cats[: n - len(objs)]):
        placed = None
        for attempt in range(2 * TRIES):
            # Halfway through, fall back to a small object: large ones are the ones that do not fit.
            o = new_obj(cat_name, "small" if attempt >= TRIES else None)
            name = pick(rng, sorted(vv["actions"]))
            action = vv["actions"][name]
            speed = pick(rng, ["slow", "fast"])
            hw, hh = o["w"] / W / 2, o["h"] / H / 2
            if action["kind"] == "move":
                plan = plan_mover(rng, action, N, fps, hw, hh, leave=rng.random() < vv["leave_share"])
                if plan is None:
                    continue
                speed = "fast" if plan.speed_value >= vv["fast_speed"] else "slow"
            else:
                plan = plan_in_place(rng, action, speed, N, fps, win, hw, hh,
                                     late=rng.random() < vv["late_appear_share"])
                if plan is None:
                    continue
            o.update(plan=plan, action=name, speed=speed, spin=action["kind"] == "spin")
            if fits(o):
                o["boxes"] = plan.boxes(o["w"] / W, o["h"] / H, o["spin"])
                placed = o
                break
        if placed:
            objs.append(placed)

    # Render. Each object's sprite is drawn once at its largest scale, then resized / rotated per frame.
    for o in objs:
        o["master_scale"] = float(o["plan"].scale.max())
        mw, mh = max(6, round((o["w"] - 2) * o["master_scale"])), max(6, round((o["h"] - 2) * o["master_scale"]))
        o["master"] = make_sprite(o["cat"]["shape"], v["colours"][o["colour"]], o["pattern"], mw, mh)
        o["seen"] = []  # (frame, clipped box in 0..1), frames where it is in view (VISIBLE)
    frames = []
    tally = BackdropTally(scene["background"])  # what the backdrop shows around the objects, frame by frame
    zoom = motion.startswith("zoom")
    for k in range(N):
        frame = _view(world, win[k], zoom, W, H, Image.BILINEAR)
        lab = _view(world_layers, win[k], zoom, W, H, Image.NEAREST)  # labels are never blended
        drawn = []  # pixel boxes of everything drawn in this frame, in view or not
        for o in objs:
            p = o["plan"]
            if k < p.start:
                continue
            spr = o["master"]
            s = p.scale[k] / o["master_scale"]
            if abs(s - 1.0) > 1e-9:
                spr = spr.resize((max(3, round(spr.width * s)), max(3, round(spr.height * s))), Image.BILINEAR)
            if p.angle[k]:
                spr = spr.rotate(float(p.angle[k]), resample=Image.BILINEAR, expand=True)
            px, py = int(round(p.cx[k] * W - spr.width / 2)), int(round(p.cy[k] * H - spr.height / 2))
            bb = spr.getchannel("A").getbbox()
            if bb is None:
                continue
            full = (px + bb[0], py + bb[1], px + bb[2], py + bb[3])
            box = (max(full[0], 0), max(full[1], 0), min(full[2], W), min(full[3], H))
            if box[0] >= box[2] or box[1] >= box[3]:
                continue  # entirely outside the frame
            frame.paste(spr, (px, py), spr)
            drawn.append(box)
            inside = (box[2] - box[0]) * (box[3] - box[1]) / ((full[2] - full[0]) * (full[3] - full[1]))
            if inside >= VISIBLE:
                o["seen"].append((k, (box[0] / W, box[1] / H, box[2] / W, box[3] / H)))
        rgb = np.asarray(frame)
        tally.add(rgb, np.asarray(lab), drawn)
        frames.append(rgb)
    scene.update(tally.scene_fields())
    data = encode_mp4(frames, fps, int(vv["crf"]), str(vv["preset"]))

    # Grounding, read back from what was drawn.
    objs = [o for o in objs if o["seen"]]
    ids = {}
    out_objects = []
    for o in objs:
        oid = f"o{len(out_objects) + 1}"
        ids[id(o)] = oid
        # Round first, then derive position / size from the rounded box, so the stored facts agree exactly.
        (k0, b0), (k1, b1) = o["seen"][0], o["seen"][-1]
        b0, b1 = [r3(x) for x in b0], [r3(x) for x in b1]
        o["first"], o["last"] = k0, k1
        out_objects.append({
            "id": oid, "category": o["category"], "colour": o["colour"],
            "size": size_label(((b0[2] - b0[0]) * (b0[3] - b0[1])) ** 0.5, "video"),
            "position": position_of((b0[0] + b0[2]) / 2, (b0[1] + b0[3]) / 2),
            "end_position": position_of((b1[0] + b1[2]) / 2, (b1[1] + b1[3]) / 2),
            "bbox": b0, "action": o["action"], "speed": o["speed"],
            "attributes": attributes_of(o["cat"], o["pattern"]),
        })
    # Events: appearances grouped by time, the collision, and departures (the first frame out of view).
    by_t: dict[int, list[str]] = {}
    for o in objs:
        by_t.setdefault(o["first"], []).append(ids[id(o)])
    evs = [{"t": r3(k / fps), "type": "appear", "objects": v_} for k, v_ in sorted(by_t.items())]
    for e in events:
        evs.append({"t": e["t"], "type": "collide", "objects": [ids[id(o)] for o in e["objects"]]})
    for o in objs:
        if o["last"] < N - 1:
            evs.append({"t": r3((o["last"] + 1) / fps), "type": "leave", "objects": [ids[id(o)]]})
    order = {"appear": 0, "collide": 1, "leave": 2}
    evs.sort(key=lambda e: (e["t"], order[e["type"]], e["objects"]))
    grounding = {
        "kind": "video", "duration_s": N / fps, "fps": fps, "scene": scene,
        "camera": {"motion": motion, "speed": cam_speed}, "objects": out_objects, "events": evs,
    }
    return data, grounding, {"width": W, "height": H, "fps": float(fps), "num_frames": N, "duration_s": N / fps}
