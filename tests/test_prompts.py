"""Prompt templates: every (modality, type, role) renders; media become the right content parts; hashes and
cache views are what the provenance and the request cache rely on."""
from __future__ import annotations

import base64
import hashlib
import io
import json

import numpy as np
import pytest

from acd import prompts
from acd.paths import PROMPTS_DIR
from acd.taxonomy import load_taxonomy


def _image(path):
    from PIL import Image

    Image.new("RGB", (64, 48), (200, 30, 30)).save(path, format="JPEG")
    return {"media_key": hashlib.sha256(path.read_bytes()).hexdigest(), "modality": "image", "ext": "jpg",
            "mime": "image/jpeg", "path": str(path)}


def _video(path, frames=24):
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=8)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            arr = np.full((48, 64, 3), i * 10 % 255, dtype=np.uint8)
            for pkt in s.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return {"media_key": hashlib.sha256(path.read_bytes()).hexdigest(), "modality": "video", "ext": "mp4",
            "mime": "video/mp4", "path": str(path)}


def _audio(path, ext="wav"):
    import soundfile as sf

    t = np.linspace(0, 0.5, 8000, endpoint=False)
    sf.write(str(path), 0.3 * np.sin(2 * np.pi * 440 * t), 16000, format=ext.upper())
    return {"media_key": hashlib.sha256(path.read_bytes()).hexdigest(), "modality": "audio", "ext": ext,
            "mime": "audio/" + ext, "path": str(path)}


@pytest.fixture()
def media(tmp_path):
    return {"image": _image(tmp_path / "a.jpg"), "video": _video(tmp_path / "v.mp4"), "audio": _audio(tmp_path / "s.wav")}


def _pair(modality, itype, **kw):
    base = {"pair_id": "p1", "modality": modality, "instruction_type": itype, "length_key": "word_range:10:20",
            "length_constraint": "The generated caption's length needs to be 10 to 20 words.",
            "rejection_strategy": "hallucination", "instruction": "Describe the scene briefly.",
            "chosen": "A red square.", "rejected": "A blue circle."}
    return {**base, **kw}


def test_every_type_and_role_renders(media):
    tax = load_taxonomy()
    strategies = ("hallucination", "ignore_instruction", "length_violation", "weak_model")
    seen_ids = set()
    for modality, itype in tax.combinations():
        for role in ("instruct", "chosen", "rejected", "judge"):
            for strategy in (strategies if role == "rejected" else (None,)):
                msgs, tid, th = prompts.render(role, _pair(modality, itype), media[modality], strategy, inline_media=False)
                assert msgs[0]["role"] == "system" and msgs[1]["role"] == "user"
                text = msgs[1]["content"][-1]["text"]
                assert "{{" not in text and "{%" not in text and text.strip()
                assert tid.startswith(f"{modality}/{itype}/{role}") and len(th) == 64
                seen_ids.add(tid)
    assert len(seen_ids) == 27 * (3 + 4)


def test_media_parts_per_modality(media):
    msgs, _, _ = prompts.render("chosen", _pair("image", "brief"), media["image"])
    part = msgs[1]["content"][0]
    assert part["type"] == "image_url" and part["image_url"]["url"].startswith("data:image/jpeg;base64,")
    raw = base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
    assert hashlib.sha256(raw).hexdigest() == media["image"]["media_key"]

    msgs, _, _ = prompts.render("chosen", _pair("video", "camera"), media["video"], frames=5)
    frames = [p for p in msgs[1]["content"] if p["type"] == "image_url"]
    assert len(frames) == 5
    from PIL import Image

    lum = [np.asarray(Image.open(io.BytesIO(base64.b64decode(f["image_url"]["url"].split(",", 1)[1])))).mean()
           for f in frames]
    assert lum == sorted(lum) and lum[-1] - lum[0] > 100  # evenly spaced over the clip, in order

    msgs, _, _ = prompts.render("chosen", _pair("audio", "event"), media["audio"])
    part = msgs[1]["content"][0]
    assert part["type"] == "input_audio" and part["input_audio"]["format"] == "wav"
    assert base64.b64decode(part["input_audio"]["data"])[:4] == b"RIFF"


def test_flac_audio_is_sent_as_wav(tmp_path):
    m = _audio(tmp_path / "s.flac", ext="flac")
    part = prompts.render("chosen", _pair("audio", "brief"), m)[0][1]["content"][0]
    assert base64.b64decode(part["input_audio"]["data"])[:4] == b"RIFF"


def test_cache_view_uses_digests_and_wire_strips_markers(media):
    for modality in ("image", "video", "audio"):
        inline, _, _ = prompts.render("chosen", _pair(modality, "brief"), media[modality])
        lazy, _, _ = prompts.render("chosen", _pair(modality, "brief"), media[modality], inline_media=False)
        canon = json.dumps(prompts.canonical_messages(inline))
        assert media[modality]["media_key"] in canon and "base64" not in canon
        assert prompts.canonical_messages(inline) == prompts.canonical_messages(lazy)
        wired = prompts.wire_messages(lazy)
        assert wired == prompts.wire_messages(inline)
        assert prompts.MARKER not in json.dumps(wired) and prompts.PATH_MARKER not in json.dumps(wired)


def test_lazy_and_inline_media_carry_the_same_mime(tmp_path):
    """A .gif (or .png, .webp) sent lazily is labelled by the one MIME table, as it is inline; not image/jpeg."""
    from PIL import Image

    for ext, fmt, mime in (("gif", "GIF", "image/gif"), ("png", "PNG", "image/png"), ("webp", "WEBP", "image/webp")):
        path = tmp_path / f"a.{ext}"
        Image.new("RGB", (16, 16), (10, 200, 30)).save(path, format=fmt)
        item = {"media_key": hashlib.sha256(path.read_bytes()).hexdigest(), "modality": "image", "ext": ext,
                "mime": mime, "path": str(path)}
        lazy = prompts.wire_messages(prompts.render("chosen", _pair("image", "brief"), item, inline_media=False)[0])
        inline = prompts.wire_messages(prompts.render("chosen", _pair("image", "brief"), item)[0])
        url = lazy[1]["content"][0]["image_url"]["url"]
        assert url.startswith(f"data:{mime};base64,"), url[:40]
        assert lazy == inline


def test_template_hash_and_wording(media):
    _, tid, th = prompts.render("chosen", _pair("image", "brief"), media["image"])
    files = prompts.template_files("chosen", "image", "brief")
    assert files[0] == PROMPTS_DIR / "image" / "brief.yaml"
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_text().encode() + b"\0")
    assert th == h.hexdigest()
    # The judge reads one file besides the type file; hash covers both. Single-file hash = sha256(file).
    msgs, _, _ = prompts.render("chosen", _pair("image", "brief"), media["image"])
    user = msgs[1]["content"][-1]["text"]
    assert "The generated caption's length needs to be 10 to 20 words." in user  # the length sentence
    assert "concise caption" in user  # the type's ask
    rej = prompts.render("rejected", _pair("image", "brief"), media["image"], "length_violation")[0][1]["content"][-1]["text"]
    assert "at least 55 words" in rej  # a concrete off-target length for word_range 10..20
    rej = prompts.render("rejected", _pair("image", "brief"), media["image"], "hallucination")[0][1]["content"][-1]["text"]
    assert "NOT in the image" in rej
    with pytest.raises(KeyError):
        prompts.render("rejected", _pair("image", "brief"), media["image"], "no_such_strategy")


def test_length_violation_targets_are_outside_bounds():
    from acd.taxonomy import LengthConstraint

    for c in load_taxonomy().constraints:
        wording = prompts.length_violation(c.key)
        if c.form == "none":
            assert "150 words" in wording
            continue
        lo, hi = LengthConstraint.from_key(c.key).bounds()
        if "single sentence" in wording:
            assert lo > 1, (c.key, wording)
            continue
        n = int(next(w for w in wording.split() if w.isdigit()))
        if "at least" in wording or "or more" in wording:
            assert n > hi, (c.key, wording)
        elif "no more than" in wording:
            assert n < lo, (c.key, wording)
        else:
            raise AssertionError((c.key, wording))
