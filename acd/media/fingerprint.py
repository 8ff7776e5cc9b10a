"""Perceptual hashes and acoustic fingerprints of stored media, for deduplication (acd.dedup).

- image: a 64-bit DCT pHash (grayscale, 32x32, the 8x8 lowest frequencies against their median): stable
  under resizing, re-compression and brightness shifts, so near copies are a few bits apart.
- video: the pHashes of `frames` frames spread evenly over the clip (acd.media.video.sample_frames), so two
  encodes of one clip give aligned lists.
- audio: Chromaprint's raw fingerprint (the algorithm `fpcalc -raw` prints: one 32-bit item per ~0.124 s),
  computed in-process through libchromaprint (Debian libchromaprint1, which libchromaprint-tools' fpcalc
  uses) on the stored 16 kHz mono PCM, instead of one fpcalc process per file (~40 ms each, and fpcalc 1.5.1
  stops after the first of several files). tests/test_media_dedup.py checks it equals fpcalc's output.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import io
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image

PHASH_BITS = 64
FP_MAX_SECONDS = 120  # fpcalc's default -length: the first two minutes identify a recording


@lru_cache(maxsize=1)
def _dct_matrix() -> np.ndarray:
    """The orthonormal DCT-II matrix for 32 points (the first 8 rows are all a pHash needs)."""
    n = 32
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2 / n)
    m[0] /= np.sqrt(2)
    return m[:8]


def phash(img: Image.Image) -> int:
    """64-bit pHash of an image, as a signed int64 (Parquet has no uint64 the readers agree on)."""
    g = np.asarray(img.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    d = _dct_matrix()
    low = d @ g @ d.T  # the 8x8 lowest frequencies
    bits = (low > np.median(low)).ravel()
    value = int(np.packbits(bits).view(">u8")[0])
    return value - (1 << 64) if value >= 1 << 63 else value


def image_phash(data: bytes) -> int:
    with Image.open(io.BytesIO(data)) as im:
        im.draft("L", (64, 64))  # JPEG: decode at a reduced scale (the hash looks at 32x32 anyway)
        return phash(im)


def video_phashes(data: bytes, frames: int, limits: Any) -> list[int]:
    from acd.media.video import sample_frames

    return [phash(im) for im in sample_frames(data, frames, limits)]


# --- Chromaprint --------------------------------------------------------------------------------------------

class _Chromaprint:
    ALGORITHM = 1  # CHROMAPRINT_ALGORITHM_TEST2, fpcalc's default (its `-algorithm 2` counts from 1)

    def __init__(self):
        name = ctypes.util.find_library("chromaprint")
        if name is None:
            raise RuntimeError("audio deduplication needs libchromaprint: apt-get install libchromaprint-tools "
                               "(scripts/test-deps.sh installs it), or set dedup.media: exact in the recipe")
        lib = ctypes.CDLL(name)
        lib.chromaprint_new.restype = ctypes.c_void_p
        lib.chromaprint_new.argtypes = [ctypes.c_int]
        lib.chromaprint_free.argtypes = [ctypes.c_void_p]
        lib.chromaprint_start.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        lib.chromaprint_feed.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
        lib.chromaprint_finish.argtypes = [ctypes.c_void_p]
        lib.chromaprint_get_raw_fingerprint.argtypes = [
            ctypes.c_void_p, ctypes.POINTER(ctypes.POINTER(ctypes.c_uint32)), ctypes.POINTER(ctypes.c_int)]
        lib.chromaprint_dealloc.argtypes = [ctypes.c_void_p]
        self.lib = lib

    def raw(self, pcm: np.ndarray, rate: int) -> list[int]:
        """Raw fingerprint of mono int16 samples (what `fpcalc -raw` prints for the same audio)."""
        lib = self.lib
        ctx = lib.chromaprint_new(self.ALGORITHM)
        try:
            pcm = np.ascontiguousarray(pcm[: FP_MAX_SECONDS * rate], dtype=np.int16)
            if not lib.chromaprint_start(ctx, rate, 1) or not lib.chromaprint_feed(
                    ctx, pcm.ctypes.data, len(pcm)) or not lib.chromaprint_finish(ctx):
                return []
            ptr = ctypes.POINTER(ctypes.c_uint32)()
            size = ctypes.c_int()
            if not lib.chromaprint_get_raw_fingerprint(ctx, ctypes.byref(ptr), ctypes.byref(size)):
                return []
            try:
                return [int(v) for v in np.ctypeslib.as_array(ptr, (size.value,))] if size.value else []
            finally:
                lib.chromaprint_dealloc(ptr)
        finally:
            lib.chromaprint_free(ctx)


@lru_cache(maxsize=1)
def _chromaprint() -> _Chromaprint:
    return _Chromaprint()


def audio_fingerprint(data: bytes) -> list[int]:
    """Chromaprint raw fingerprint (unsigned 32-bit items) of stored audio (mono PCM WAV); [] when the clip is
    too short or too uniform to give one (a steady tone gives one repeated item: still a fingerprint)."""
    import soundfile as sf

    pcm, rate = sf.read(io.BytesIO(data), dtype="int16", always_2d=True)
    return _chromaprint().raw(pcm[:, 0], int(rate))
