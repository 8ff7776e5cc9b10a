"""Fuzzing the probes with mutated valid files (truncations, bit flips, random headers, splices): the only
exception allowed out is ProbeError with a known reason, and every call finishes within a time bound."""
from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acd.media import REASONS, ProbeError, load_limits
from acd.media.item import probe_bytes
from corpus import jpeg_bytes, png_bytes, video_bytes, wav_bytes

LIMITS = load_limits({"video": {"max_decode_frames": 200}, "time": {"max_seconds_per_file": 1.5}})
BOUND_S = 2.0

SEEDS = {
    "jpg": jpeg_bytes(48, 32, exif_orientation=6),
    "png": png_bytes(40, 30),
    "mp4": video_bytes(frames=8, audio=True),
    "avi": video_bytes(fmt="avi", codec="mpeg4", frames=8),
    "wav": wav_bytes(0.3, 22050, 2),
    "flac": None,  # built below (soundfile)
}


def _flac() -> bytes:
    import io

    import numpy as np
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.linspace(-0.5, 0.5, 4000), 8000, format="FLAC")
    return buf.getvalue()


SEEDS["flac"] = _flac()
for _ext, _data in SEEDS.items():  # warm-up: first-use imports (scipy.signal ~1 s) are not probe time
    probe_bytes(_data, _ext, LIMITS)


@st.composite
def mutated(draw, base: bytes):
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["truncate", "flip", "header", "splice", "zero_run"]))
        if not data:
            break
        if op == "truncate":
            del data[draw(st.integers(0, len(data) - 1)):]
        elif op == "flip":
            for _ in range(draw(st.integers(1, 16))):
                i = draw(st.integers(0, len(data) - 1))
                data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "header":
            n = draw(st.integers(1, min(64, len(data))))
            data[:n] = draw(st.binary(min_size=n, max_size=n))
        elif op == "splice":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=256))
        else:
            i = draw(st.integers(0, len(data) - 1))
            n = draw(st.integers(1, 512))
            data[i:i + n] = bytes(min(n, len(data) - i))
    return bytes(data)


def _check(data: bytes, ext: str) -> None:
    t = time.monotonic()
    try:
        p = probe_bytes(data, ext, LIMITS)
        assert p.data and p.modality in ("image", "video", "audio")
    except ProbeError as exc:
        assert exc.reason in REASONS
    assert time.monotonic() - t < BOUND_S


FUZZ = settings(max_examples=100, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize("ext", ["jpg", "png"])
def test_image_probe_fuzz(ext):
    @FUZZ
    @given(mutated(SEEDS[ext]))
    def run(data):
        _check(data, ext)

    run()


@pytest.mark.parametrize("ext", ["mp4", "avi"])
def test_video_probe_fuzz(ext):
    @FUZZ
    @given(mutated(SEEDS[ext]))
    def run(data):
        _check(data, ext)

    run()


@pytest.mark.parametrize("ext", ["wav", "flac"])
def test_audio_probe_fuzz(ext):
    @FUZZ
    @given(mutated(SEEDS[ext]))
    def run(data):
        _check(data, ext)

    run()


@FUZZ
@given(st.binary(max_size=2048), st.sampled_from(["jpg", "png", "webp", "gif", "mp4", "mov", "webm", "wav", "mp3", "ogg", "txt"]))
def test_random_bytes_under_any_name(data, ext):
    _check(data, ext)
