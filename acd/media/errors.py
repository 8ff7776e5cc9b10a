"""Why an input was quarantined: one exception type carrying a short machine-readable reason code."""
from __future__ import annotations

# Every reason code ingest can write to QUARANTINE_SCHEMA.reason. Tests check each bad input maps to one.
REASONS = {
    "zero_byte": "the file is empty",
    "too_large": "the file is over the modality's byte cap (schemas/ingest.yaml max_bytes)",
    "unreadable": "permission denied, IO error, missing target or not a regular file",
    "escapes_root": "a symlink or path that resolves outside the source root (never opened)",
    "symlink_loop": "a symlink that (eventually) points back at itself, so it names no file",
    "invalid_path": "a manifest/dataset path no file can have (a NUL byte)",
    "wrong_extension": "the bytes are a different media type than the file name says",
    "unsupported_type": "neither the extension nor the bytes are a supported media type",
    "truncated_image": "an image whose data ends early",
    "corrupt_image": "an image that does not decode",
    "decompression_bomb": "declared decoded size over its cap, checked before decoding: pixels over image.max_pixels"
                          " or video.max_pixels, samples (rate x channels x seconds) over audio.max_decoded_samples",
    "corrupt_video": "a video container or stream that does not decode",
    "no_video_stream": "a video file without a video stream",
    "not_audio": "an audio file whose bytes are not decodable audio",
    "too_long": "duration over the modality's max_duration_s",
    "too_short": "duration under the modality's min_duration_s",
    "timeout": "probing ran past time.max_seconds_per_file",
    "missing_field": "a manifest/dataset row without its path/media field",
    "not_utf8": "manifest text that is not UTF-8 (invalid bytes, or a lone surrogate escape in JSON)",
    "malformed_row": "a manifest row that does not parse (bad JSON, not an object)",
    "corrupt_manifest": "a Parquet manifest (or one of its row groups) that does not read; its rows are unknown",
    "modality_mismatch": "a manifest's modality column disagrees with the bytes",
    "fetch_disabled": "an http(s) URL while the source does not allow fetching",
    "fetch_failed": "an http(s) fetch that failed",
    "internal_error": "an unexpected exception while probing (a bug: the detail has the type); the run goes on",
    # Ingest (same bytes in one batch) and the dedup stage (same bytes in a later batch, or a near copy:
    # perceptual hash / acoustic fingerprint; acd.dedup). The detail names the kept item and its media_key.
    "duplicate": "the same media as an earlier item of the source (kept once; detail names the kept media_key)",
    "eval_overlap": "the same media as an item of an evaluation set (decontaminate.media; detail names it)",
}


class ProbeError(Exception):
    """Raised by probes and safe readers; `reason` is one of REASONS, `detail` says what exactly."""

    def __init__(self, reason: str, detail: str = ""):
        if reason not in REASONS:
            raise ValueError(f"unknown quarantine reason {reason!r}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
