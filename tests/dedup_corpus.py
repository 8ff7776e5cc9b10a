"""A corpus for the media-dedup tests, generated at test time: distinct procedural pictures and sound clips,
their planted near copies (the transforms a scraped corpus repeats media under) and evaluation copies.

    <root>/source/a_orig/img_NNN.png, snd_NNN.wav      the distinct originals (sorted first: kept)
    <root>/source/b_copies/<orig>__<transform>.<ext>   planted near duplicates of some originals
    <root>/eval/<orig>__<transform>.<ext>              evaluation media: transformed copies of 8 originals
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image, ImageDraw, ImageEnhance

N_IMAGES, N_AUDIO = 60, 30
AUDIO_RATE = 22050
AUDIO_SECONDS = 6.0
IMAGE_TRANSFORMS = ("resize50", "jpeg50", "crop4", "bright10")
AUDIO_TRANSFORMS = ("resample", "flac", "noise30db", "trim50ms")


def picture(i: int) -> Image.Image:
    """A distinct picture: a two-colour gradient, 6-14 random shapes, a word, a little pixel noise."""
    rng = np.random.default_rng(1000 + i)
    w, h = int(rng.integers(200, 320)), int(rng.integers(160, 260))
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, w)[None, :, None] if i % 2 else np.linspace(0, 1, h)[:, None, None]
    base = (c0 * (1 - t) + c1 * t) * np.ones((h, w, 1))
    im = Image.fromarray(base.astype(np.uint8))
    d = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(6, 15))):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(20, w // 2)), y0 + int(rng.integers(20, h // 2))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        kind = int(rng.integers(0, 4))
        if kind == 0:
            d.ellipse((x0, y0, x1, y1), fill=fill)
        elif kind == 1:
            d.rectangle((x0, y0, x1, y1), fill=fill)
        elif kind == 2:
            pts = [(int(rng.integers(0, w)), int(rng.integers(0, h))) for _ in range(int(rng.integers(3, 6)))]
            d.polygon(pts, fill=fill)
        else:
            d.line((x0, y0, x1, y1), fill=fill, width=int(rng.integers(3, 12)))
    d.text((int(rng.integers(0, w // 2)), int(rng.integers(0, h - 20))), f"item {i}", fill=(255, 255, 255))
    arr = np.asarray(im).astype(np.int16) + rng.integers(-6, 7, (h, w, 3))
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def transform_image(im: Image.Image, kind: str) -> tuple[bytes, str]:
    buf = io.BytesIO()
    if kind == "resize50":
        im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS).save(buf, "PNG")
        return buf.getvalue(), "png"
    if kind == "jpeg50":
        im.save(buf, "JPEG", quality=50)
        return buf.getvalue(), "jpg"
    if kind == "crop4":  # 4% of the width and of the height cut off, 2% on each side (a one-sided 4% cut moves
        # the picture by 4% and a pHash by up to 18 bits: beyond the threshold; see the test's notes)
        dx, dy = round(im.width * 0.02), round(im.height * 0.02)
        im.crop((dx, dy, im.width - dx, im.height - dy)).save(buf, "PNG")
        return buf.getvalue(), "png"
    if kind == "bright10":
        ImageEnhance.Brightness(im).enhance(1.10).save(buf, "PNG")
        return buf.getvalue(), "png"
    raise ValueError(kind)


def sound(i: int) -> np.ndarray:
    """A distinct 6 s clip: a random melody of tones, chirps and noise bursts with rests, float in [-1, 1]."""
    rng = np.random.default_rng(5000 + i)
    sr = AUDIO_RATE
    out = np.zeros(int(AUDIO_SECONDS * sr))
    pos = 0
    while pos < len(out):
        n = int(rng.uniform(0.12, 0.5) * sr)
        t = np.arange(n) / sr
        kind = int(rng.integers(0, 4))
        f = rng.uniform(150, 2500)
        if kind == 0:
            x = np.sin(2 * np.pi * f * t) + 0.4 * np.sin(2 * np.pi * 2.01 * f * t)
        elif kind == 1:
            x = np.sin(2 * np.pi * (f * t + rng.uniform(-1500, 1500) * t * t))
        elif kind == 2:
            x = rng.standard_normal(n) * 0.5
            x = np.convolve(x, np.ones(int(rng.integers(2, 12))) / 4, mode="same")
        else:
            x = np.zeros(n)  # a rest
        env = np.minimum(1, np.minimum(t / 0.01, (t[-1] - t + 1e-9) / 0.02)) if n else t
        seg = (x * env * rng.uniform(0.2, 0.6))[: len(out) - pos]
        out[pos:pos + len(seg)] = seg
        pos += n
    return np.clip(out, -1, 1)


def transform_audio(x: np.ndarray, kind: str, seed: int) -> tuple[bytes, str]:
    buf = io.BytesIO()
    sr = AUDIO_RATE
    if kind == "resample":  # 22.05 kHz -> 32 kHz (band-limited, polyphase)
        from scipy.signal import resample_poly

        sf.write(buf, resample_poly(x, 640, 441).clip(-1, 1), 32000, format="WAV", subtype="PCM_16")
        return buf.getvalue(), "wav"
    if kind == "flac":
        sf.write(buf, x, sr, format="FLAC", subtype="PCM_16")
        return buf.getvalue(), "flac"
    if kind == "noise30db":  # white noise 30 dB below the clip's power
        rng = np.random.default_rng(seed)
        noise = rng.standard_normal(len(x)) * np.sqrt(np.mean(x ** 2) / 10 ** (30 / 10))
        sf.write(buf, (x + noise).clip(-1, 1), sr, format="WAV", subtype="PCM_16")
        return buf.getvalue(), "wav"
    if kind == "trim50ms":  # the first 50 ms cut off
        sf.write(buf, x[int(0.05 * sr):], sr, format="WAV", subtype="PCM_16")
        return buf.getvalue(), "wav"
    raise ValueError(kind)


def wav(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, AUDIO_RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


@dataclass
class DedupCorpus:
    source: Path
    eval: Path
    # planted copy (source_id) -> (transform, its original's source_id)
    copies: dict[str, tuple[str, str]] = field(default_factory=dict)
    # original (source_id) -> (transform, the evaluation file's name)
    evals: dict[str, tuple[str, str]] = field(default_factory=dict)
    originals: list[str] = field(default_factory=list)
    byte_copy: tuple[str, str] = ("", "")  # (copy, original): the same bytes


def build_dedup_corpus(root: Path) -> DedupCorpus:
    """60 pictures and 30 clips; each transform planted on 3 originals of its modality (12 + 12 copies);
    8 other originals transformed into the evaluation folder."""
    c = DedupCorpus(Path(root) / "source", Path(root) / "eval")
    for d in (c.source / "a_orig", c.source / "b_copies", c.eval):
        d.mkdir(parents=True)
    pics = [picture(i) for i in range(N_IMAGES)]
    clips = [sound(i) for i in range(N_AUDIO)]
    for i, im in enumerate(pics):
        (c.source / "a_orig" / f"img_{i:03d}.png").write_bytes(png(im))
        c.originals.append(f"a_orig/img_{i:03d}.png")
    for i, x in enumerate(clips):
        (c.source / "a_orig" / f"snd_{i:03d}.wav").write_bytes(wav(x))
        c.originals.append(f"a_orig/snd_{i:03d}.wav")
    for t, kind in enumerate(IMAGE_TRANSFORMS):
        for i in range(3 * t, 3 * t + 3):
            data, ext = transform_image(pics[i], kind)
            name = f"b_copies/img_{i:03d}__{kind}.{ext}"
            (c.source / name).write_bytes(data)
            c.copies[name] = (kind, f"a_orig/img_{i:03d}.png")
    for t, kind in enumerate(AUDIO_TRANSFORMS):
        for i in range(3 * t, 3 * t + 3):
            data, ext = transform_audio(clips[i], kind, seed=i)
            name = f"b_copies/snd_{i:03d}__{kind}.{ext}"
            (c.source / name).write_bytes(data)
            c.copies[name] = (kind, f"a_orig/snd_{i:03d}.wav")
    # One byte-for-byte copy: the same media_key in a later batch (the media table keeps the key once).
    (c.source / "b_copies" / "img_050__bytes.png").write_bytes(png(pics[50]))
    c.byte_copy = ("b_copies/img_050__bytes.png", "a_orig/img_050.png")
    plan = [("img", 40, "resize50"), ("img", 41, "jpeg50"), ("img", 42, "crop4"), ("img", 43, "bright10"),
            ("img", 44, "jpeg50"), ("snd", 20, "noise30db"), ("snd", 21, "trim50ms"), ("snd", 22, "resample")]
    for kind_, i, t in plan:
        if kind_ == "img":
            data, ext = transform_image(pics[i], t)
            orig = f"a_orig/img_{i:03d}.png"
        else:
            data, ext = transform_audio(clips[i], t, seed=100 + i)
            orig = f"a_orig/snd_{i:03d}.wav"
        name = f"eval_{kind_}_{i:03d}__{t}.{ext}"
        (c.eval / name).write_bytes(data)
        c.evals[orig] = (t, name)
    return c
