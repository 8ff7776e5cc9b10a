"""Compatibility entry point: the probes live in acd.media (image/video/audio + safety)."""
from acd.media import REASONS, ProbeError, Probed, load_limits  # noqa: F401
from acd.media.audio import probe_audio  # noqa: F401
from acd.media.image import probe_image  # noqa: F401
from acd.media.item import probe_bytes  # noqa: F401
from acd.media.video import probe_video, sample_frames  # noqa: F401
