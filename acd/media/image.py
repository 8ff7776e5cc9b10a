"""Image probe + normalisation: header-only size check, verify, full decode, EXIF orientation, RGB, size cap.

Output is stored byte-for-byte when nothing needs changing (so a file's media_key is just its sha256);
otherwise it is re-encoded with fixed settings, so the same input always yields the same bytes and key.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from acd.media.errors import ProbeError
from acd.media.limits import as_limits
from acd.media.sniff import mime_of

# Pillow format -> (stored ext, mime) for the formats stored as they are; mimes come from sniff's one table.
_SAVE = {fmt: (ext, mime_of(ext)) for fmt, ext in (("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp"))}


@dataclass
class Probed:
    data: bytes
    ext: str
    mime: str
    modality: str
    facts: dict = field(default_factory=dict)
    normalised: bool = False  # True when `data` is a re-encoding of the input, not the input itself


def _open(data: bytes) -> Image.Image:
    try:
        # Pillow's own bomb check raises beyond 2x MAX_IMAGE_PIXELS; ours (below) is stricter and comes first
        # for anything Pillow lets through. Both happen at open(), which reads only the header.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ProbeError("decompression_bomb", str(exc)) from None
    except UnidentifiedImageError as exc:
        # (Pillow's message names the BytesIO object by address: not in the detail, which must be deterministic)
        raise ProbeError("corrupt_image", "not a decodable image: Pillow cannot identify the image file") from None
    except Exception as exc:  # hostile headers raise OSError, ValueError, SyntaxError, struct.error ...
        raise _classify_decode_error(exc) from None


def _classify_decode_error(exc: BaseException) -> ProbeError:
    msg = str(exc)
    low = msg.lower()
    if "truncated" in low or "premature end" in low or isinstance(exc, EOFError) or "buffer is not large enough" in low:
        return ProbeError("truncated_image", msg or type(exc).__name__)
    return ProbeError("corrupt_image", f"{type(exc).__name__}: {msg}")


def _flatten(im: Image.Image) -> Image.Image:
    """Any mode -> RGB. Transparency is composited on white (not dropped) so the result looks as intended."""
    if im.mode == "RGB":
        return im
    if im.mode in ("P", "PA", "LA", "RGBA", "La") or (im.mode == "L" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: scale to 8 bits (convert("L") would clip everything over 255 to white)
        import numpy as np

        a = np.asarray(im, dtype=np.float64)
        hi = a.max() if a.size else 0
        a = (a * (255.0 / hi)) if hi > 255 else a
        return Image.fromarray(a.clip(0, 255).astype("uint8"), "L").convert("RGB")
    return im.convert("RGB")


def probe_image(data: bytes, limits: Any) -> Probed:
    """`limits`: the IngestLimits model (or a mapping of overrides)."""
    lim = as_limits(limits).image
    im = _open(data)
    w, h = im.size
    if w <= 0 or h <= 0:
        raise ProbeError("corrupt_image", f"declared size {w}x{h}")
    if w * h > int(lim.max_pixels):
        raise ProbeError("decompression_bomb", f"declared {w}x{h} = {w * h} pixels > max_pixels {lim.max_pixels}")
    fmt = (im.format or "").upper()
    try:
        im.verify()  # structure/CRC check without decoding pixels; the image must be reopened afterwards
        im = _open(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im.load()  # full decode; raises on truncated data (LOAD_TRUNCATED_IMAGES stays False)
    except ProbeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ProbeError("decompression_bomb", str(exc)) from None
    except Exception as exc:  # Pillow plugins raise a zoo of types on hostile input; all mean "bad image"
        raise _classify_decode_error(exc) from None

    try:
        orientation = im.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block is not a broken image; ignore the orientation then
        orientation = 1
    multi_frame = getattr(im, "n_frames", 1) > 1
    longest = int(lim.longest_side)
    keep = {f.upper() for f in lim.keep_formats}
    needs_change = (
        fmt not in keep or fmt not in _SAVE or im.mode != "RGB" or orientation not in (1, None)
        or max(im.size) > longest or multi_frame
    )
    if not needs_change:
        ext, mime = _SAVE[fmt]
        return Probed(data, ext, mime, "image", {"width": w, "height": h})

    try:
        out = ImageOps.exif_transpose(im)  # applies and removes the EXIF orientation tag
        out = _flatten(out)
        if max(out.size) > longest:
            scale = longest / max(out.size)
            size = (max(1, round(out.width * scale)), max(1, round(out.height * scale)))
            out = out.resize(size, Image.Resampling.LANCZOS)
    except Exception as exc:
        raise _classify_decode_error(exc) from None
    buf = io.BytesIO()
    if fmt == "JPEG":  # lossy stays lossy (PNG of a photo is 5x bigger); everything else goes lossless
        out.save(buf, "JPEG", quality=int(lim.jpeg_quality), subsampling=0, optimize=False)
        ext, mime = _SAVE["JPEG"]
    else:
        out.save(buf, "PNG", compress_level=6)
        ext, mime = _SAVE["PNG"]
    return Probed(buf.getvalue(), ext, mime, "image", {"width": out.width, "height": out.height}, normalised=True)
