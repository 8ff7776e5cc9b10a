"""Media type by magic numbers and by file name, so the two can be compared (wrong_extension).

A *family* is a container/codec family the bytes can prove (jpeg, png, isobmff, riff-wave ...). MP4 and MOV
share the ISO-BMFF family and WebM/MKV share Matroska, so .mov holding an ftyp box is not a mismatch.
"""
from __future__ import annotations

# extension -> (modality, family, canonical stored ext, mime)
EXTENSIONS: dict[str, tuple[str, str, str, str]] = {
    "jpg": ("image", "jpeg", "jpg", "image/jpeg"),
    "jpeg": ("image", "jpeg", "jpg", "image/jpeg"),
    "png": ("image", "png", "png", "image/png"),
    "webp": ("image", "webp", "webp", "image/webp"),
    "gif": ("image", "gif", "gif", "image/gif"),
    "mp4": ("video", "isobmff", "mp4", "video/mp4"),
    "m4v": ("video", "isobmff", "mp4", "video/mp4"),
    "mov": ("video", "isobmff", "mov", "video/quicktime"),
    "webm": ("video", "matroska", "webm", "video/webm"),
    "mkv": ("video", "matroska", "mkv", "video/x-matroska"),
    "avi": ("video", "riff-avi", "avi", "video/x-msvideo"),
    "ogv": ("video", "ogg", "ogv", "video/ogg"),
    "wav": ("audio", "riff-wave", "wav", "audio/wav"),
    "flac": ("audio", "flac", "flac", "audio/flac"),
    "mp3": ("audio", "mp3", "mp3", "audio/mpeg"),
    "ogg": ("audio", "ogg", "ogg", "audio/ogg"),
    "oga": ("audio", "ogg", "ogg", "audio/ogg"),
    "opus": ("audio", "ogg", "opus", "audio/ogg"),
    "m4a": ("audio", "isobmff", "m4a", "audio/mp4"),
}

# What a family's bytes are by default when the file name says nothing useful.
FAMILY_DEFAULT = {
    "jpeg": "jpg", "png": "png", "webp": "webp", "gif": "gif", "isobmff": "mp4", "matroska": "webm",
    "riff-avi": "avi", "riff-wave": "wav", "flac": "flac", "mp3": "mp3", "ogg": "ogg",
}

SNIFF_BYTES = 64  # how much of a file sniffing needs


def sniff(head: bytes) -> str | None:
    """The family the leading bytes prove, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[4:8] == b"ftyp":
        return "isobmff"
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free"):  # old QuickTime files without ftyp
        return "isobmff"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return "riff-wave"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "riff-avi"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and (head[1] & 0xE6) in (0xE2, 0xE4, 0xE6)):
        return "mp3"  # ID3 tag, or an MPEG audio frame sync (layer bits 01/10/11)
    if head.startswith(b"OggS"):
        return "ogg"
    return None


def mime_of(ext: str, default: str = "application/octet-stream") -> str:
    """The MIME type of a file extension (the project's one table: EXTENSIONS)."""
    known = EXTENSIONS.get(ext.lower().lstrip("."))
    return known[3] if known else default


def ext_of(name: str) -> str:
    return name.rsplit(".", 1)[-1].lower() if "." in name.rsplit("/", 1)[-1] else ""


def classify(name_ext: str, head: bytes) -> tuple[str, str, str, str]:
    """(modality, family, stored ext, mime) for a file named *.name_ext starting with `head`.

    Raises ProbeError(wrong_extension) when the bytes prove another family than the name, and
    ProbeError(unsupported_type) when neither says media.
    """
    from acd.media.errors import ProbeError

    fam = sniff(head)
    known = EXTENSIONS.get(name_ext)
    if known is None:
        if fam is None:
            raise ProbeError("unsupported_type", f"extension {name_ext!r} and bytes are not a supported media type")
        raise ProbeError("wrong_extension", f"extension {name_ext!r} but the bytes are {fam}")
    if fam is None:
        # Not a known signature. Let the modality's decoder decide (it raises not_audio/corrupt_* with detail);
        # this keeps "a .wav that is not audio" a not_audio, as users expect, rather than a naming problem.
        return known
    if fam != known[1]:
        raise ProbeError("wrong_extension", f"named .{name_ext} ({known[1]}) but the bytes are {fam}")
    return known


def default_ext(family: str | None, modality: str | None = None) -> str:
    """The extension to name bytes by when no usable file name exists (bytes-only dataset cells, bare URLs)."""
    if family == "isobmff" and modality == "audio":
        return "m4a"
    if family == "ogg" and modality == "video":
        return "ogv"
    return FAMILY_DEFAULT.get(family or "", "")


def effective_ext(name_ext: str, head: bytes, trust_sniffed: bool = False, modality: str | None = None) -> str:
    """The extension to classify by: the name's, or (unknown name, or `trust_sniffed`) the bytes' own."""
    fam = sniff(head)
    known = EXTENSIONS.get(name_ext)
    if fam is not None and (known is None and not name_ext or (trust_sniffed and (known is None or known[1] != fam))):
        return default_ext(fam, modality)
    return name_ext
