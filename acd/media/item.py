"""One input's bytes -> a probed, normalised media item, or a ProbeError saying why not.

The sources turn these into media and quarantine rows (acd.sources.collector.Collector): this module knows
nothing of sources or rows, so the dependency runs one way, sources -> media.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from acd.media.audio import probe_audio
from acd.media.errors import ProbeError
from acd.media.image import Probed, probe_image
from acd.media.limits import as_limits
from acd.media.safety import read_regular
from acd.media.sniff import classify, effective_ext
from acd.media.video import probe_video


def probe_bytes(data: bytes, name_ext: str, limits: Any, expected_modality: str | None = None,
                trust_sniffed: bool = False) -> Probed:
    """Classify (magic numbers vs. name), apply the byte cap, then probe + normalise by modality.
    `limits`: the IngestLimits model (or a mapping of overrides of schemas/ingest.yaml).

    A name that disagrees with the bytes is quarantined as wrong_extension unless `trust_sniffed`, in which
    case the bytes' own type wins. An empty name (bytes-only input) always goes by the bytes.
    """
    if not data:
        raise ProbeError("zero_byte", "0 bytes")
    name_ext = effective_ext(name_ext, data[:64], trust_sniffed, expected_modality)
    modality, _family, ext, _mime = classify(name_ext, data[:64])
    if expected_modality and expected_modality != modality:
        raise ProbeError("modality_mismatch", f"declared {expected_modality}, the bytes are {modality}")
    limits = as_limits(limits)
    cap = int(getattr(limits.max_bytes, modality))
    if len(data) > cap:
        raise ProbeError("too_large", f"{len(data)} bytes > max_bytes.{modality} {cap}")
    if modality == "image":
        return probe_image(data, limits)
    if modality == "video":
        return probe_video(data, limits, ext=ext)
    return probe_audio(data, limits, ext=ext)


def byte_cap(name_ext: str, head: bytes, limits: Any, trust_sniffed: bool = False) -> int:
    """The byte cap of the modality an input's name and first bytes say (raises wrong_extension etc. early)."""
    modality = classify(effective_ext(name_ext, head, trust_sniffed), head)[0]
    return int(getattr(as_limits(limits).max_bytes, modality))


def read_file(real: Path, name_ext: str, limits: Any, trust_sniffed: bool = False) -> bytes:
    """Read a (resolved, root-checked) file, capped by the cap of the modality its head and name say."""
    limits = as_limits(limits)
    return read_regular(real, lambda head, size: byte_cap(name_ext, head, limits, trust_sniffed))[1]
