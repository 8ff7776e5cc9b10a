"""Audio probe + normalisation: facts, duration limits from the header, mono PCM-16 WAV at the target rate.

Decoding uses soundfile (libsndfile: WAV/FLAC/OGG/MP3) and falls back to PyAV for anything else (AAC in
M4A, Opus in WebM ...). Downmix is a plain channel mean and resampling is scipy's polyphase filter, both
pure functions of the samples, so the same input always yields the same stored bytes.
"""
from __future__ import annotations

import io
import math
from fractions import Fraction
from typing import Any

import numpy as np
import soundfile as sf

from acd.media.errors import ProbeError
from acd.media.image import Probed
from acd.media.limits import Clock, as_limits


MIN_RATE, MAX_RATE = 1000, 768000  # outside this a header is lying (or it is not audio)


def _check_rate(sr: int) -> None:
    if not MIN_RATE <= sr <= MAX_RATE:
        raise ProbeError("not_audio", f"implausible sample rate {sr} Hz")


def _check_duration(duration: float, lim: Any) -> None:
    if not math.isfinite(duration):
        raise ProbeError("not_audio", f"duration {duration}")
    if duration > float(lim.max_duration_s):
        raise ProbeError("too_long", f"{duration:.2f}s > max_duration_s {lim.max_duration_s}")
    if duration < float(lim.min_duration_s):
        raise ProbeError("too_short", f"{duration:.3f}s < min_duration_s {lim.min_duration_s}")


def _check_decoded_size(frames: int, sr: int, channels: int, lim: Any) -> None:
    """What decoding would hold in memory (rate x channels x seconds), from the header, before decoding."""
    cap = int(lim.max_decoded_samples)
    if frames * channels > cap:
        raise ProbeError("decompression_bomb", f"declared {frames / sr:.1f}s x {sr} Hz x {channels} channels = "
                                               f"{frames * channels} samples > audio.max_decoded_samples {cap}")


BLOCK_FRAMES = 1 << 16  # decode in blocks: the clock is checked between them


def _decode_soundfile(data: bytes, lim: Any, clock: Clock) -> tuple[np.ndarray, int, int] | None:
    try:
        f = sf.SoundFile(io.BytesIO(data))
    except Exception:
        return None  # not a libsndfile format: try PyAV
    with f:
        sr, channels = f.samplerate, f.channels
        if sr <= 0 or channels <= 0:
            raise ProbeError("not_audio", f"header declares {sr} Hz, {channels} channels")
        _check_rate(sr)
        if channels > 64:
            raise ProbeError("not_audio", f"implausible channel count {channels}")
        # The header's length is checked before reading samples, so a 10-hour file (or a small file that
        # decodes to gigabytes: many channels at a high rate) is refused without decoding it.
        known = 0 < f.frames < 2**62  # libsndfile says SF_COUNT_MAX when it does not know
        if known:
            _check_duration(f.frames / sr, lim)
            _check_decoded_size(f.frames, sr, channels, lim)
        max_frames = int(float(lim.max_duration_s) * sr) + 1
        budget = int(lim.max_decoded_samples) // channels  # frames the decoded-size cap allows
        want = min(f.frames, max_frames) if known else max_frames
        out = np.empty((want, channels), np.float32) if known else None  # known size: one buffer, no copies
        chunks, total = [], 0
        try:
            while total < want:
                block = f.read(min(BLOCK_FRAMES, want - total), dtype="float32", always_2d=True,
                               out=None if out is None else out[total:total + BLOCK_FRAMES])
                if not len(block):
                    break
                if out is None:
                    chunks.append(block)
                total += len(block)
                if total > budget:
                    raise ProbeError("decompression_bomb", f"over audio.max_decoded_samples "
                                                           f"{lim.max_decoded_samples} while decoding")
                clock.check("audio decode")
        except ProbeError:
            raise
        except Exception as exc:
            raise ProbeError("not_audio", f"{type(exc).__name__}: {exc}") from None
    x = out[:total] if out is not None else (np.concatenate(chunks) if chunks else np.zeros((0, channels), np.float32))
    return x, sr, channels


def _decode_av(data: bytes, lim: Any, clock: Clock) -> tuple[np.ndarray, int, int]:
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
            _check_decoded_size(int(float(st.duration * st.time_base) * sr), sr, ch, lim)
        max_samples = int(float(lim.max_duration_s) * sr) + 1
        cap = int(lim.max_decoded_samples)
        resampler = av.AudioResampler(format="flt", layout="stereo" if ch > 1 else "mono", rate=sr)
        chunks, total, decoded = [], 0, 0
        for frame in container.decode(st):
            decoded += frame.samples * max(1, len(frame.layout.channels))
            if decoded > cap:
                raise ProbeError("decompression_bomb", f"over audio.max_decoded_samples {cap} while decoding")
            for f in resampler.resample(frame):
                a = f.to_ndarray().reshape(-1, 2 if ch > 1 else 1)  # packed flt: interleaved samples
                chunks.append(a)
                total += len(a)
            if total > max_samples:
                raise ProbeError("too_long", f"over max_duration_s {lim.max_duration_s} while decoding")
            clock.check("audio decode")
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
    mono = x[:, 0].astype(np.float64) if x.shape[1] == 1 else x.mean(axis=1, dtype=np.float64)  # no 2-D copy
    if sr == target:
        return mono
    from scipy.signal import resample_poly

    # resample_poly's filter grows with max(up, down): an odd rate like 22051 Hz would mean a 400k-tap filter.
    # Approximating the ratio (denominator <= 1000) keeps every common rate exact (44.1k->16k is 160/441) and
    # bounds the work; for odd rates the pitch error is under 0.1%.
    r = Fraction(target, sr).limit_denominator(1000)
    return resample_poly(mono, r.numerator, r.denominator)


def probe_audio(data: bytes, limits: Any, ext: str = "wav") -> Probed:
    """`limits`: the IngestLimits model (or a mapping of overrides)."""
    limits = as_limits(limits)
    lim = limits.audio
    target = int(lim.target_sample_rate)
    import scipy.signal  # noqa: F401  first use costs ~1 s of imports: before the clock starts, not on it

    clock = Clock(limits)
    got = _decode_soundfile(data, lim, clock)
    x, sr, channels = got if got is not None else _decode_av(data, lim, clock)
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
    del x
    clock.check("audio resampling")
    buf = io.BytesIO()
    sf.write(buf, np.clip(y, -1.0, 1.0), target, format="WAV", subtype="PCM_16")
    return Probed(buf.getvalue(), "wav", "audio/wav", "audio",
                  {"sample_rate": target, "channels": 1, "duration_s": len(y) / target, **facts_src}, normalised=True)


def _is_pcm16_wav(data: bytes) -> bool:
    try:
        return sf.info(io.BytesIO(data)).subtype == "PCM_16"
    except Exception:
        return False
