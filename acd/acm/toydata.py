"""A tiny dataset in the exact built-dataset shard layout, for tests and smoke runs (no pipeline needed).

<dir>/shards/<split>/<modality>-000000.tar: one sample per media item, key = media_key, media bytes once
(jpg / mp4 / wav) + `json` = {media_key, modality, pairs: [...], grounding}. Captions are written from the
same facts that drew the media (colour, shape, position, motion, tone), so a model can learn something.
"""
from __future__ import annotations

import hashlib
import io
import json
import random
import tarfile
from pathlib import Path

import numpy as np

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220), "yellow": (230, 210, 40)}
SHAPES = ("square", "circle")
POS = {"left": 0.25, "center": 0.5, "right": 0.75}
TONES = {"bell": 880.0, "horn": 220.0, "whistle": 1760.0}


def _jpg(colour, shape, pos, size=64) -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), (235, 235, 235))
    d = ImageDraw.Draw(img)
    cx, r = int(POS[pos] * size), size // 6
    box = [cx - r, size // 2 - r, cx + r, size // 2 + r]
    (d.rectangle if shape == "square" else d.ellipse)(box, fill=COLOURS[colour])
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _mp4(colour, direction, frames=8, size=64) -> bytes:
    import av

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        st = out.add_stream("mpeg4", rate=8)
        st.width = st.height = size
        st.pix_fmt = "yuv420p"
        for t in range(frames):
            a = np.full((size, size, 3), 235, np.uint8)
            x = int((0.15 + 0.7 * t / (frames - 1)) * size)
            if direction == "left":
                x = size - x
            a[size // 2 - 8: size // 2 + 8, max(0, x - 8): x + 8] = COLOURS[colour]
            for pkt in st.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)
    return buf.getvalue()


def _wav(source, seconds=1.0, sr=16000) -> bytes:
    import soundfile as sf

    t = np.arange(int(seconds * sr)) / sr
    wave = (0.3 * np.sin(2 * np.pi * TONES[source] * t)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, wave, sr, format="WAV")
    return buf.getvalue()


def _pairs(media_key, modality, chosen_short, chosen_long, wrong, rng):
    """Three pairs per item: a brief, a detail and a q-c-c pair (rejected == chosen)."""
    items = [
        ("brief", "The generated caption's length needs to be no more than 10 words.",
         f"Provide a brief caption of this {modality}.", chosen_short, wrong),
        ("detail", None, f"Describe this {modality} in detail.", chosen_long, chosen_short),
        ("brief", None, f"Give a short caption for this {modality}.", chosen_short, chosen_short),
    ]
    out = []
    for k, (typ, length, q, c, a) in enumerate(items):
        instruction = f"{q} {length}" if length else q
        out.append({"pair_id": hashlib.sha1(f"{media_key}{k}".encode()).hexdigest()[:16], "instruction_type": typ,
                    "length_constraint": length, "instruction": instruction, "chosen": c, "rejected": a,
                    "is_qcc": a == c, "rejection_strategy": "identical" if a == c else "hallucination"})
    return out


def make_toy_dataset(root: str | Path, n_image: int = 8, n_video: int = 3, n_audio: int = 4, seed: int = 0,
                     split: str = "train") -> Path:
    rng = random.Random(seed)
    root = Path(root)
    shard_dir = root / "shards" / split
    shard_dir.mkdir(parents=True, exist_ok=True)
    samples: dict[str, list] = {"image": [], "video": [], "audio": []}
    colours = list(COLOURS)
    for i in range(n_image):
        c, s, p = colours[i % 4], SHAPES[(i // 4) % 2], list(POS)[i % 3]
        data = _jpg(c, s, p)
        wrong = f"A {colours[(i + 1) % 4]} {SHAPES[(i // 4 + 1) % 2]} on the {list(POS)[(i + 1) % 3]}."
        g = {"kind": "image", "scene": {"background": "plain grey wall", "mood": "calm"},
             "objects": [{"id": "o1", "category": s, "colour": c, "position": p, "size": "small"}]}
        samples["image"].append(("jpg", data, g, f"A {c} {s} on the {p}.",
                                 f"A small {c} {s} sits on the {p} side of a plain grey background.", wrong))
    for i in range(n_video):
        c, d = colours[i % 4], ("right", "left")[i % 2]
        g = {"kind": "video", "duration_s": 1.0, "fps": 8, "camera": {"motion": "static"},
             "scene": {"background": "plain grey wall"},
             "objects": [{"id": "o1", "category": "block", "colour": c, "position": "left" if d == "right" else "right",
                          "action": f"moves to the {d}"}],
             "events": [{"t": 0.0, "type": "appear", "objects": ["o1"]}]}
        samples["video"].append(("mp4", _mp4(c, d), g, f"A {c} block moves to the {d}.",
                                 f"A {c} block slides steadily to the {d} across a plain grey background.",
                                 f"A {colours[(i + 2) % 4]} block stays still."))
    for i in range(n_audio):
        s = list(TONES)[i % 3]
        g = {"kind": "audio", "duration_s": 1.0, "sample_rate": 16000, "scene": {"background": "silence"},
             "sounds": [{"id": "s1", "source": s, "start": 0.0, "end": 1.0, "pitch": "high", "loudness": "loud"}],
             "events": [{"t": 0.0, "type": "start", "sounds": ["s1"]}]}
        samples["audio"].append(("wav", _wav(s), g, f"A {s} sounds once.",
                                 f"A loud {s} rings for a second over complete silence.", "A dog barks twice."))
    for modality, items in samples.items():
        if not items:
            continue
        with tarfile.open(shard_dir / f"{modality}-000000.tar", "w") as tar:
            for ext, data, g, short, long, wrong in items:
                key = hashlib.sha256(data).hexdigest()
                meta = {"media_key": key, "modality": modality, "ext": ext, "grounding": g,
                        "pairs": _pairs(key, modality, short, long, wrong, rng)}
                for name, payload in ((f"{key}.{ext}", data), (f"{key}.json", json.dumps(meta).encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
    return root
