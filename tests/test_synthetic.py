"""The synthetic source: deterministic bytes, decodable files, grounding that is true of the media."""
from __future__ import annotations

import collections
import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from acd.grounding import POSITIONS, position_of
from acd.records import MEDIA_SCHEMA, rows_to_table
from acd.sources.factory import make_source
from acd.sources.synthetic import SyntheticSource
from acd.synth import vocab
from acd.synth.audio import render_audio
from acd.synth.image import render_image
from acd.synth.validate import problems
from acd.synth.video import encode_mp4, render_video

SEED = 20251122
ROOT = Path(__file__).resolve().parent.parent


# Rendered once per session and shared: rendering is the slow part.
@pytest.fixture(scope="module")
def images():
    return [render_image(SEED, i) for i in range(240)]


@pytest.fixture(scope="module")
def videos():
    return [render_video(SEED, i) for i in range(72)]


@pytest.fixture(scope="module")
def audios():
    return [render_audio(SEED, i) for i in range(160)]


def colour_share(rgb: np.ndarray, box, colour: str, tol: float = 60.0) -> float:
    """Share of the box's pixels within `tol` (RGB distance) of the named colour."""
    H, W = rgb.shape[:2]
    x0, y0, x1, y1 = box
    patch = rgb[int(y0 * H):max(int(y0 * H) + 1, int(round(y1 * H))),
                int(x0 * W):max(int(x0 * W) + 1, int(round(x1 * W)))].astype(float)
    target = np.asarray(vocab()["colours"][colour], float)
    return float((np.linalg.norm(patch - target, axis=-1) < tol).mean())


# ---------------------------------------------------------------------------------------------- source
def test_batches_partition_counts(tmp_path):
    src = make_source({"kind": "synthetic", "counts": {"image": 130, "audio": 3}, "batch_size": 64}, SEED)
    assert isinstance(src, SyntheticSource)
    assert src.batches() == ["image-0000", "image-0001", "image-0002", "audio-0000"]
    covered = collections.defaultdict(list)
    for b in src.batches():
        m, idx = src.items(b)
        covered[m] += list(idx)
    assert covered == {"image": list(range(130)), "audio": [0, 1, 2]}
    with pytest.raises(ValueError):
        src.items("image-0003")
    with pytest.raises(ValueError):
        SyntheticSource({"counts": {"text": 3}}, SEED)


def test_read_rows_conform_and_files_match(tmp_path):
    src = SyntheticSource({"kind": "synthetic", "counts": {"image": 3, "video": 2, "audio": 2}, "batch_size": 2}, SEED)
    rows = []
    for b in src.batches():
        rows += src.read(b, tmp_path / "media").media
    table = rows_to_table(rows, MEDIA_SCHEMA)  # raises on any contract break
    assert table.num_rows == 7
    for r in rows:
        data = (tmp_path / r["uri"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == r["media_key"] and len(data) == r["bytes"]
        assert r["source"] == "synthetic" and r["licence"].startswith("CC0-1.0")
        assert r["existing_captions"] is None
        g = json.loads(r["grounding"])
        assert g["kind"] == r["modality"] and problems(g) == []
    ids = [r["source_id"] for r in rows]
    assert ids[:3] == ["synthetic:image:0", "synthetic:image:1", "synthetic:image:2"]
    v = next(r for r in rows if r["modality"] == "video")
    assert v["num_frames"] == round(v["duration_s"] * v["fps"]) and v["width"] % 2 == 0
    a = next(r for r in rows if r["modality"] == "audio")
    assert (a["sample_rate"], a["channels"], a["width"]) == (16000, 1, None)


def test_batches_are_independent_and_deterministic(tmp_path):
    """A batch read alone, in another order, into another run gives the same keys and rows."""
    cfg = {"counts": {"image": 4, "video": 2, "audio": 4}, "batch_size": 2}
    a = SyntheticSource(cfg, SEED)
    rows_a = {b: a.read(b, tmp_path / "a" / "media").media for b in a.batches()}
    b = SyntheticSource(cfg, SEED)
    for name in reversed(b.batches()):
        assert b.read(name, tmp_path / "b" / "media").media == rows_a[name]
    other = SyntheticSource(cfg, SEED + 1)
    keys_other = {r["media_key"] for n in other.batches() for r in other.read(n, tmp_path / "c" / "media").media}
    keys_a = {r["media_key"] for rows in rows_a.values() for r in rows}
    assert not keys_a & keys_other
    assert len(keys_a) == 10  # no two items collide


def test_same_bytes_in_a_fresh_process():
    """No hidden state (hash salt, caches, import order): a new interpreter renders identical bytes."""
    code = (
        "import hashlib,sys\n"
        "from acd.synth.image import render_image\nfrom acd.synth.video import render_video\n"
        "from acd.synth.audio import render_audio\n"
        f"for f in (render_audio, render_video, render_image):\n"
        f"    print(hashlib.sha256(f({SEED}, 5)[0]).hexdigest())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"}).stdout.split()
    here = [hashlib.sha256(f(SEED, 5)[0]).hexdigest() for f in (render_audio, render_video, render_image)]
    assert out == here


def test_video_encoding_is_byte_deterministic():
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (144, 192, 3), dtype=np.uint8) for _ in range(12)]
    a, b = encode_mp4(frames, 8, 26, "veryfast"), encode_mp4(frames, 8, 26, "veryfast")
    assert a == b
    assert b"creation_time" not in a
    assert a.index(b"moov") < a.index(b"mdat")  # +faststart: browsers can start before the end


# ---------------------------------------------------------------------------------------------- images
def test_images_decode_and_grounding_is_true(images):
    W, H = vocab()["image"]["size"]
    n_objects, shares = [], []
    for data, g, facts in images:
        assert problems(g) == [], problems(g)
        img = Image.open(io.BytesIO(data))
        assert img.format == "JPEG" and img.size == (W, H) == (facts["width"], facts["height"])
        assert "exif" not in img.info
        rgb = np.asarray(img.convert("RGB"))
        n_objects.append(len(g["objects"]))
        cells = [o["position"] for o in g["objects"]]
        assert len(set(cells)) == len(cells)  # one object per grid cell: positions name one thing
        assert len({o["category"] for o in g["objects"]}) == len(g["objects"])
        for o in g["objects"]:
            # The named colour really is there: a thin striped kite still leaves over 8% of its box.
            shares.append(colour_share(rgb, o["bbox"], o["colour"]))
            assert shares[-1] > 0.08, (o, g["scene"])
    assert np.mean(shares) > 0.4  # and typically it is most of the box
    counts = collections.Counter(n_objects)
    assert set(counts) == {1, 2, 3, 4, 5} and sum(n >= 2 for n in n_objects) > 0.8 * len(n_objects)


def test_image_vocabulary_coverage(images):
    v = vocab()
    objs = [o for _, g, _ in images for o in g["objects"]]
    scenes = [g["scene"] for _, g, _ in images]
    assert {o["category"] for o in objs} == set(v["categories"])
    assert {o["colour"] for o in objs} == set(v["colours"])
    assert {o["size"] for o in objs} == {"small", "medium", "large"}
    assert {o["position"] for o in objs} == set(POSITIONS)
    assert {s["background"] for s in scenes} == set(v["backgrounds"])
    assert {s["lighting"] for s in scenes} == set(v["lightings"])
    assert {s["viewpoint"] for s in scenes} == set(v["viewpoints"])
    assert any("striped" in o["attributes"] for o in objs) and any("spotted" in o["attributes"] for o in objs)


# ---------------------------------------------------------------------------------------------- videos
def test_videos_decode_with_declared_facts(videos):
    for data, g, facts in videos[:24]:
        with av.open(io.BytesIO(data)) as c:
            st = c.streams.video[0]
            assert st.codec_context.name == "h264" and st.codec_context.pix_fmt == "yuv420p"
            assert (st.width, st.height) == (facts["width"], facts["height"])
            assert float(st.average_rate) == facts["fps"] == g["fps"]
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(st)]
        assert len(frames) == facts["num_frames"] == round(g["duration_s"] * g["fps"])
        fps = g["fps"]
        for o in g["objects"]:
            # Its colour is inside its box in the frame where it first appears.
            first = next(e["t"] for e in g["events"] if e["type"] == "appear" and o["id"] in e["objects"])
            assert colour_share(frames[round(first * fps)], o["bbox"], o["colour"], tol=70) > 0.12, o
        for e in g["events"]:
            if e["type"] == "appear" and e["t"] > 0:  # a late arrival is not drawn in the frame before
                for oid in e["objects"]:
                    o = next(x for x in g["objects"] if x["id"] == oid)
                    before = colour_share(frames[round(e["t"] * fps) - 1], o["bbox"], o["colour"], tol=70)
                    after = colour_share(frames[round(e["t"] * fps)], o["bbox"], o["colour"], tol=70)
                    assert after > before + 0.1, (o, before, after)


def test_video_grounding_consistent_and_covering(videos):
    v = vocab()
    objs, cams, evtypes = [], set(), set()
    for _, g, _ in videos:
        assert problems(g) == [], problems(g)
        assert g["objects"] and g["events"] and g["camera"]["motion"]
        objs += g["objects"]
        cams.add(g["camera"]["motion"])
        evtypes |= {e["type"] for e in g["events"]}
        for e in g["events"]:
            if e["type"] == "collide":  # the pair meets: adjacent boxes in the same row, facing each other
                a, b = (next(o for o in g["objects"] if o["id"] == i) for i in e["objects"])
                assert (a["action"], b["action"]) == ("moves to the right", "moves to the left")
        for o in g["objects"]:
            if o["action"] in ("bounces", "spins", "grows", "shrinks") and g["camera"]["motion"] == "static":
                assert o["position"] == o["end_position"], o
    assert cams == {"static", "pan left", "pan right", "tilt up", "tilt down", "zoom in", "zoom out"}
    assert {o["action"] for o in objs} >= set(v["video"]["actions"])
    assert evtypes == {"appear", "collide", "leave"}
    assert {g["scene"]["background"] for _, g, _ in videos} == set(v["backgrounds"])
    assert len({o["category"] for o in objs}) == len(v["categories"])


def test_video_mover_really_moves(videos):
    """Pixel check of a horizontal mover: its colour's centroid in the frame goes the named way."""
    checked = 0
    for data, g, _ in videos:
        colours = [o["colour"] for o in g["objects"]]
        bg_avoid = vocab()["backgrounds"][g["scene"]["background"]]["avoid"]
        for o in g["objects"]:
            if o["action"] not in ("moves from left to right", "moves from right to left") or colours.count(o["colour"]) > 1 \
                    or o["colour"] in ("white", "grey", "black") or o["colour"] in bg_avoid:
                continue
            with av.open(io.BytesIO(data)) as c:
                frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
            target = np.asarray(vocab()["colours"][o["colour"]], float)
            xs = []
            for fr in (frames[0], frames[len(frames) // 3]):
                mask = np.linalg.norm(fr.astype(float) - target, axis=-1) < 50
                xs.append(np.nonzero(mask)[1].mean() / fr.shape[1])
            assert (xs[1] - xs[0]) * (1 if o["action"].endswith("right") else -1) > 0.03, (o, xs)
            assert position_of(xs[0], 0.5).split()[-1] == o["position"].split()[-1]
            checked += 1
    assert checked >= 3


# ---------------------------------------------------------------------------------------------- audio
def test_audio_decodes_and_events_are_audible(audios):
    for data, g, facts in audios:
        assert problems(g) == [], problems(g)
        x, sr = sf.read(io.BytesIO(data), dtype="float64")
        info = sf.info(io.BytesIO(data))
        assert info.subtype == "PCM_16" and info.channels == 1 == facts["channels"]
        assert sr == g["sample_rate"] == 16000 and len(x) == round(g["duration_s"] * sr)
        assert 2.0 <= g["duration_s"] <= 4.0
        inside = np.zeros(len(x), bool)
        peaks = {}
        for s in g["sounds"]:
            a, b = round(s["start"] * sr), round(s["end"] * sr)
            inside[a:b] = True
            peaks[s["id"]] = np.abs(x[a:b]).max()
            assert peaks[s["id"]] > 0.15  # even a soft sound is far above any background
        outside = np.abs(x[~inside]).max() if (~inside).any() else 0.0
        assert outside < 0.06, (g["scene"], outside)  # nothing sounds outside the declared intervals
        loud = [peaks[s["id"]] for s in g["sounds"] if s["loudness"] == "loud"]
        soft = [peaks[s["id"]] for s in g["sounds"] if s["loudness"] == "soft"]
        if loud and soft:
            assert min(loud) > 2 * max(soft)


def test_audio_coverage(audios):
    v = vocab()["audio"]
    sounds = [s for _, g, _ in audios for s in g["sounds"]]
    assert {s["source"] for s in sounds} == set(v["sounds"])
    assert {g["scene"]["background"] for _, g, _ in audios} == set(v["backgrounds"])
    assert {len(g["sounds"]) for _, g, _ in audios} == {1, 2, 3, 4}
    assert {s["pitch"] for s in sounds} == {"high", "low"} and {s["loudness"] for s in sounds} == {"loud", "soft"}


def test_scene_decorations_are_grounded(images, videos):
    """scene.decorations names what the backdrop shows: only the background's own decorations, only ground
    ones in a top-down view (no sky), none lying on the ground when the ground is out of view. Whether each
    is really on screen is checked on the pixels by tests/test_synth_grounding.py."""
    v = vocab()
    words = {spec["words"]: name for name, spec in v["decorations"].items()}
    seen = set()
    for kind, items in (("image", images), ("video", videos)):
        for item in items:
            g = item[1]
            scene = g["scene"]
            decor = [words[d] for d in scene["decorations"]]
            bg = v["backgrounds"][scene["background"]]
            assert set(decor) <= set(bg["decor"]), (scene, decor)
            for name in decor:
                on_ground = bool(v["decorations"][name].get("ground"))
                assert on_ground or scene["viewpoint"] != "top-down", (kind, scene, name)
                assert scene["ground_visible"] or not on_ground, (kind, scene, name)
            seen.update(decor)
    assert len(seen) >= 8, seen
