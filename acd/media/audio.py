"""Audio probe + normalisation: facts, duration limits from the header, mono PCM-16 WAV at the target rate.

Decoding uses soundfile (libsndfile: WAV/FLAC/OGG/MP3) and falls back to PyAV for anything else (AAC in
M4A, Opus in WebM ...). Downmix is a plain channel mean and resampling is scipy's polyphase filter, both
pure functions of the samples, so the same input always yields the same stored bytes.
"""
from __future__ import annotations

import io
import math
from fractions import Fraction

import numpy as np
import soundfile as sf

from acd.media.errors import ProbeError
from acd.media.image import Probed


MIN_RATE, MAX_RATE = 1000, 768000  # outside this a header is lying (or it is not audio)


def _check_rate(sr: int) -> None:
    if not MIN_RATE <= sr <= MAX_RATE:
        raise ProbeError("not_audio", f"implausible sample rate {sr} Hz")


def _check_duration(duration: float, lim: dict) -> None:
    if not math.isfinite(duration):
        raise ProbeError("not_audio", f"duration {duration}")
    if duration > float(lim["max_duration_s"]):
        raise ProbeError("too_long", f"{duration:.2f}s > max_duration_s {lim['max_duration_s']}")
    if duration < float(lim["min_duration_s"]):
        raise ProbeError("too_short", f"{duration:.3f}s < min_duration_s {lim['min_duration_s']}")


def _decode_soundfile(data: bytes, lim: dict) -> tuple[np.ndarray, int, int] | None:
    try:
        info = sf.info(io.BytesIO(data))
    except Exception:
        return None  # not a libsndfile format: try PyAV
    if info.samplerate <= 0 or info.channels <= 0:
        raise ProbeError("not_audio", f"header declares {info.samplerate} Hz, {info.channels} channels")
    _check_rate(info.samplerate)
    if info.channels > 64:
        raise ProbeError("not_audio", f"implausible channel count {info.channels}")
    # The header's length is checked before reading samples, so a 10-hour file is refused without decoding it.
    if info.frames > 0:
        _check_duration(info.frames / info.samplerate, lim)
    max_frames = int(float(lim["max_duration_s"]) * info.samplerate) + 1
    try:
        x, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True, frames=max_frames)
    except Exception as exc:
        raise ProbeError("not_audio", f"{type(exc).__name__}: {exc}") from None
    return x, sr, info.channels


def _decode_av(data: bytes, lim: dict) -> tuple[np.ndarray, int, int]:
    import av

    try:
        container = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except Exception as exc:
        raise ProbeError("not_audio", f"not decodable audio: {type(exc).__name__}: {exc}") from None
    try:
        if not container.streams.audio:
            raise ProbeError("not_audio", "no audio stream")
        st = container.streams.audio[0]
        if st.codec_context is None:
            raise ProbeError("not_audio", "audio stream with an unknown codec")
        sr, ch = st.codec_context.sample_rate, st.codec_context.channels
        if not sr or not ch:
            raise ProbeError("not_audio", f"stream declares {sr} Hz, {ch} channels")
        _check_rate(sr)
        if st.duration and st.time_base:
            _check_duration(float(st.duration * st.time_base), lim)
        max_samples = int(float(lim["max_duration_s"]) * sr) + 1
        resampler = av.AudioResampler(format="flt", layout="stereo" if ch > 1 else "mono", rate=sr)
        chunks, total = [], 0
        for frame in container.decode(st):
            for f in resampler.resample(frame):
                a = f.to_ndarray().reshape(-1, 2 if ch > 1 else 1)  # packed flt: interleaved samples
                chunks.append(a)
                total += len(a)
            if total > max_samples:
                raise ProbeError("too_long", f"over max_duration_s {lim['max_duration_s']} while decoding")
        if not chunks:
            raise ProbeError("not_audio", "no decodable audio frame")
        return np.concatenate(chunks), sr, ch
    except ProbeError:
        raise
    except Exception as exc:
        raise ProbeError("not_audio", f"decode failed: {type(exc).__name__}: {exc}") from None
    finally:
        container.close()


def to_mono_rate(x: np.ndarray, sr: int, target: int) -> np.ndarray:
    """(frames, channels) float -> mono float at `target` Hz: channel mean, then polyphase resampling."""
    mono = x.astype(np.float64).mean(axis=1)
    if sr == target:
        return mono
    from scipy.signal import resample_poly

    # resample_poly's filter grows with max(up, down): an odd rate like 22051 Hz would mean a 400k-tap filter.
    # Approximating the ratio (denominator <= 1000) keeps every common rate exact (44.1k->16k is 160/441) and
    # bounds the work; for odd rates the pitch error is under 0.1%.
    r = Fraction(target, sr).limit_denominator(1000)
    return resample_poly(mono, r.numerator, r.denominator)


def probe_audio(data: bytes, limits: dict, ext: str = "wav") -> Probed:
    lim = limits["audio"]
    target = int(lim["target_sample_rate"])
    got = _decode_soundfile(data, lim)
    x, sr, channels = got if got is not None else _decode_av(data, lim)
    if x.size == 0:
        raise ProbeError("too_short", "no samples")
    if not np.isfinite(x).all():
        raise ProbeError("not_audio", "non-finite samples")
    _check_duration(len(x) / sr, lim)
    facts_src = {"source_sample_rate": sr, "source_channels": channels}
    # Already what we store (mono 16-bit WAV at the target rate): keep the bytes, so the key is the file's sha256.
    if ext == "wav" and sr == target and x.shape[1] == 1 and _is_pcm16_wav(data):
        return Probed(data, "wav", "audio/wav", "audio",
                      {"sample_rate": sr, "channels": 1, "duration_s": len(x) / sr, **facts_src})
    y = to_mono_rate(x, sr, target)
    buf = io.BytesIO()
    sf.write(buf, np.clip(y, -1.0, 1.0), target, format="WAV", subtype="PCM_16")
    return Probed(buf.getvalue(), "wav", "audio/wav", "audio",
                  {"sample_rate": target, "channels": 1, "duration_s": len(y) / target, **facts_src}, normalised=True)


def _is_pcm16_wav(data: bytes) -> bool:
    try:
        return sf.info(io.BytesIO(data)).subtype == "PCM_16"
    except Exception:
        return False
