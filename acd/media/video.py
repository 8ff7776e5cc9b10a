"""Video probe + normalisation with PyAV: facts, a bounded validation decode, H.264/yuv420p MP4 re-encode.

Bounded work: at most video.max_decode_frames frames are decoded to validate or sample, the declared frame
size is checked before any decode, and a wall-clock budget (time.max_seconds_per_file) is checked between frames.
"""
from __future__ import annotations

import io
import os
import tempfile
from fractions import Fraction
from typing import Any

import av
import numpy as np
from PIL import Image

from acd.media.errors import ProbeError
from acd.media.image import Probed
from acd.media.limits import Clock as _Clock
from acd.media.limits import as_limits
from acd.media.sniff import mime_of

_AUDIO_PLAYABLE = {"mp4": {"aac", "mp3"}, "webm": {"opus", "vorbis"}}




def _open(data: bytes):
    try:
        return av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except Exception as exc:  # av.error.* (InvalidDataError, EOFError ...) and ValueError on odd probes
        raise ProbeError("corrupt_video", f"cannot open container: {type(exc).__name__}: {exc}") from None


def _duration(container, vs) -> float | None:
    if vs.duration is not None and vs.time_base:
        return float(vs.duration * vs.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _stream_span(container, vs) -> float | None:
    """The video stream's own declared length (not the container's, which an audio track can make longer):
    the stream duration, else Matroska's per-track DURATION tag, else the container's when video is alone."""
    if vs.duration is not None and vs.time_base:
        return float(vs.duration * vs.time_base)
    tag = (vs.metadata or {}).get("DURATION") or (vs.metadata or {}).get("duration")
    if tag:
        try:
            h, m, sec = tag.split(":")
            return int(h) * 3600 + int(m) * 60 + float(sec)
        except ValueError:
            pass
    if container.duration is not None and len(container.streams) == 1:
        return container.duration / av.time_base
    return None


def probe_video(data: bytes, limits: Any, ext: str = "mp4") -> Probed:
    """`limits`: the IngestLimits model (or a mapping of overrides)."""
    limits = as_limits(limits)
    lim = limits.video
    clock = _Clock(limits)
    container = _open(data)
    try:
        if not container.streams.video:
            kinds = ",".join(s.type for s in container.streams) or "none"
            raise ProbeError("no_video_stream", f"streams: {kinds}")
        vs = container.streams.video[0]
        cc = vs.codec_context
        if cc is None:  # a stream whose codec FFmpeg does not know (e.g. a mangled fourcc)
            raise ProbeError("corrupt_video", "video stream with an unknown codec")
        w, h = int(cc.width or 0), int(cc.height or 0)
        if w <= 0 or h <= 0:
            raise ProbeError("corrupt_video", f"video stream declares {w}x{h}")
        if w * h > int(lim.max_pixels):
            raise ProbeError("decompression_bomb", f"declared frame {w}x{h} > max_pixels {lim.max_pixels}")
        codec = cc.name
        rate = vs.average_rate or vs.guessed_rate
        fps = float(rate) if rate else None
        declared = int(vs.frames or 0)
        duration = _duration(container, vs)
        audio = container.streams.audio[0] if container.streams.audio else None
        audio_cc = audio.codec_context if audio is not None else None
        audio_codec = audio_cc.name if audio_cc is not None else ("unknown" if audio is not None else None)

        # Validation decode: every frame up to the cap must decode; a short count vs. the header is truncation.
        cap = int(lim.max_decode_frames)
        decoded, pix_fmt, last_end = 0, None, None
        try:
            for frame in container.decode(vs):
                if decoded == 0:
                    pix_fmt = frame.format.name
                if frame.time is not None:  # where this frame stops showing: its own duration, else 1/fps
                    shown = float(frame.duration * frame.time_base) if frame.duration and frame.time_base else (
                        1.0 / fps if fps else 0.0)
                    end = frame.time + shown
                    last_end = end if last_end is None else max(last_end, end)
                decoded += 1
                if decoded >= cap:
                    break
                if decoded % 16 == 0:
                    clock.check("video validation decode")
        except ProbeError:
            raise
        except Exception as exc:
            raise ProbeError("corrupt_video", f"decode failed after {decoded} frames: {type(exc).__name__}: {exc}") from None
        if decoded == 0:
            raise ProbeError("corrupt_video", "no decodable video frame")
        if decoded < cap and declared and decoded < 0.9 * declared:
            raise ProbeError("corrupt_video", f"decoded {decoded} of {declared} declared frames (truncated?)")
        # Containers without a frame count (WebM/Matroska): the decoded frames must cover the declared length.
        span = _stream_span(container, vs)
        if decoded < cap and not declared and span and last_end is not None:
            start = float(vs.start_time * vs.time_base) if vs.start_time is not None and vs.time_base else 0.0
            covered = last_end - start
            if covered < 0.9 * span:
                raise ProbeError("corrupt_video", f"decoded frames cover {covered:.2f}s of the {span:.2f}s the "
                                                  "container declares (truncated?)")
    finally:
        container.close()

    # Stopped at the cap with frames still to come: the row records it (checked_frames), so nothing past the
    # cap passes as validated; a re-encode keeps only those frames and records the input's length too.
    more = declared > decoded or (duration is not None and fps and duration * fps > decoded + 0.5) \
        or not (declared or duration)
    hit_cap = decoded >= cap and bool(more)

    num_frames = declared or decoded
    if duration is None or duration <= 0:
        duration = num_frames / fps if fps else None
    if duration is not None:
        if duration > float(lim.max_duration_s):
            raise ProbeError("too_long", f"{duration:.2f}s > max_duration_s {lim.max_duration_s}")
        if duration < float(lim.min_duration_s):
            raise ProbeError("too_short", f"{duration:.3f}s < min_duration_s {lim.min_duration_s}")

    playable = (
        codec in set(lim.playable.get(ext, []))
        and (ext != "mp4" or pix_fmt == "yuv420p")
        and (audio_codec is None or audio_codec in _AUDIO_PLAYABLE.get(ext, set()))
        and max(w, h) <= int(lim.max_side)
    )
    facts = {"width": w, "height": h, "duration_s": duration, "fps": fps, "num_frames": num_frames}
    if hit_cap:
        facts["checked_frames"] = decoded
    if playable:
        return Probed(data, ext, mime_of(ext), "video", facts)
    out, new_facts = reencode_h264(data, limits, clock)
    if hit_cap:
        new_facts.update(checked_frames=decoded, source_duration_s=duration)
    return Probed(out, "mp4", mime_of("mp4"), "video", new_facts, normalised=True)


def _even(x: int) -> int:
    return max(2, x - (x % 2))


def reencode_h264(data: bytes, limits: Any, clock: _Clock | None = None) -> tuple[bytes, dict]:
    """Re-encode to H.264 yuv420p MP4 (+AAC audio when there is audio), longest side capped, faststart.

    Fixed encoder settings and a single encoder thread keep the output bytes identical across runs.
    """
    limits = as_limits(limits)
    lim = limits.video
    rc = lim.reencode
    clock = clock or _Clock(limits)
    src = _open(data)
    fd, tmp = tempfile.mkstemp(suffix=".mp4")
    os.close(fd)
    try:
        vs = src.streams.video[0]
        w, h = vs.codec_context.width, vs.codec_context.height
        scale = min(1.0, int(lim.max_side) / max(w, h))
        ow, oh = _even(round(w * scale)), _even(round(h * scale))
        rate = vs.average_rate or vs.guessed_rate or Fraction(25)
        rate = Fraction(rate).limit_denominator(1001)
        a_in = src.streams.audio[0] if src.streams.audio else None
        dst = av.open(tmp, mode="w", format="mp4", options={"movflags": "+faststart"})
        try:
            ov = dst.add_stream(rc.codec, rate=rate)
            ov.width, ov.height, ov.pix_fmt = ow, oh, rc.pix_fmt
            ov.codec_context.options = {"crf": str(rc.crf), "preset": rc.preset}
            ov.codec_context.thread_count = 1
            oa = None
            if a_in is not None and a_in.codec_context is not None and a_in.codec_context.sample_rate:
                oa = dst.add_stream(rc.audio_codec, rate=a_in.codec_context.sample_rate)
                oa.bit_rate = int(rc.audio_bitrate)
            cap, n = int(lim.max_decode_frames), 0
            streams = [vs] + ([a_in] if oa is not None else [])
            for packet in src.demux(*streams):
                for frame in packet.decode():
                    if packet.stream.type == "video":
                        if n >= cap:
                            continue
                        f = frame.reformat(width=ow, height=oh, format=rc.pix_fmt)
                        f.pts, f.time_base = n, 1 / rate
                        n += 1
                        dst.mux(ov.encode(f))
                        if n % 16 == 0:
                            clock.check("video re-encode")
                    else:
                        frame.pts = None
                        dst.mux(oa.encode(frame))
            if n == 0:
                raise ProbeError("corrupt_video", "no decodable video frame to re-encode")
            dst.mux(ov.encode(None))
            if oa is not None:
                dst.mux(oa.encode(None))
        finally:
            dst.close()
        out = open(tmp, "rb").read()
    except ProbeError:
        raise
    except Exception as exc:
        raise ProbeError("corrupt_video", f"re-encode failed: {type(exc).__name__}: {exc}") from None
    finally:
        src.close()
        os.unlink(tmp)
    return out, {"width": ow, "height": oh, "duration_s": n / float(rate), "fps": float(rate), "num_frames": n}


def sample_frames(data: bytes, n: int, limits: Any) -> list[Image.Image]:
    """`n` RGB frames spread evenly over the video (nearest to the middle of n equal segments), for model input.

    Decodes sequentially (seeking is unreliable across containers) and keeps only the current best frame per
    target, so memory stays at n frames; never decodes past video.max_decode_frames.
    """
    if n <= 0:
        return []
    limits = as_limits(limits)
    clock = _Clock(limits)
    container = _open(data)
    try:
        if not container.streams.video:
            raise ProbeError("no_video_stream", "no video stream to sample")
        vs = container.streams.video[0]
        tb = vs.time_base or Fraction(1, 1000)
        start = float(vs.start_time * tb) if vs.start_time is not None else 0.0
        duration = _duration(container, vs)
        if not duration:  # unknown from the header: find the last timestamp from packets (no decoding)
            last = [p.pts for p in container.demux(vs) if p.pts is not None]
            duration = (float(max(last) * tb) - start) if last else 1.0
            container.close()
            container = _open(data)
            vs = container.streams.video[0]
        targets = [start + (k + 0.5) * duration / n for k in range(n)]
        best: list[tuple[float, Image.Image] | None] = [None] * n
        cap = int(limits.video.max_decode_frames)
        try:
            for i, frame in enumerate(container.decode(vs)):
                if i >= cap:
                    break
                t = float(frame.pts * tb) if frame.pts is not None else start + i * duration / max(1, cap)
                img = None
                for k, target in enumerate(targets):
                    err = abs(t - target)
                    if best[k] is None or err < best[k][0]:
                        img = img or frame.to_image()
                        best[k] = (err, img)
                if t > targets[-1] and all(b is not None for b in best):
                    break  # past the last target: later frames only get farther away
                if i % 16 == 0:
                    clock.check("frame sampling")
        except ProbeError:
            raise
        except Exception as exc:
            if best[0] is None:
                raise ProbeError("corrupt_video", f"{type(exc).__name__}: {exc}") from None
        if best[0] is None:
            raise ProbeError("corrupt_video", "no decodable video frame")
        return [b[1] for b in best]
    finally:
        container.close()
