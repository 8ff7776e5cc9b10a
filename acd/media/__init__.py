"""Real-media handling for ingest: sniffing, safe reads, probes that normalise, and quarantine reasons.

    probe_bytes(data, name_ext, limits) -> Probed | raises ProbeError(reason, detail)
    sample_frames(video_bytes, n, limits) -> n PIL images spread over the video
    load_limits(overrides) -> the IngestLimits model: schemas/ingest.yaml with a source's `limits:` set over it
"""
from acd.media.errors import REASONS, ProbeError
from acd.media.image import Probed, probe_image
from acd.media.limits import load_limits

__all__ = ["REASONS", "ProbeError", "Probed", "probe_image", "probe_audio", "probe_video", "probe_bytes",
           "sample_frames", "load_limits"]


def __getattr__(name):  # lazy: PyAV/scipy load only when video/audio are touched
    if name == "probe_video" or name == "sample_frames":
        from acd.media import video

        return getattr(video, name)
    if name == "probe_audio":
        from acd.media.audio import probe_audio

        return probe_audio
    if name == "probe_bytes":
        from acd.media.item import probe_bytes

        return probe_bytes
    raise AttributeError(name)
