"""Builds the good/bad media corpus for the ingest tests, at test time (no binary files in git).

`build_corpus(tmp)` writes <tmp>/root (the source root), <tmp>/outside (things the sources must never read)
and returns a Corpus: for every input file under root, the expected outcome ("ok" or a quarantine reason).
Media are tiny (tens of KB) so the whole corpus builds in about a second.
"""
from __future__ import annotations

import functools
import io
import os
import struct
import zlib
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soundfile as sf
from PIL import Image

# Limits the tests run with: small caps so too_large / too_long / the frame cap need only small files. The
# audio duration cap stays long enough for the audio bomb (110 s) to reach the decoded-size check.
TEST_LIMITS = {
    "max_bytes": {"audio": 400_000},
    "audio": {"max_duration_s": 120, "min_duration_s": 0.1},
    "video": {"max_decode_frames": 48},
}
CORPUS_SEED = 1234  # the noise in the corpus (corrupted frames) comes from this seed


def gradient(w: int, h: int, seed: int = 0) -> np.ndarray:
    """A smooth, deterministic RGB test picture (compresses like a photo, unlike noise)."""
    y, x = np.mgrid[0:h, 0:w]
    r = (x * 255 // max(1, w - 1)).astype(np.uint8)
    g = (y * 255 // max(1, h - 1)).astype(np.uint8)
    b = ((x + y + seed * 37) % 256).astype(np.uint8)
    return np.dstack([r, g, b])


def jpeg_bytes(w=96, h=64, seed=0, exif_orientation: int | None = None) -> bytes:
    im = Image.fromarray(gradient(w, h, seed))
    buf = io.BytesIO()
    kw = {}
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kw["exif"] = exif.tobytes()
    im.save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


def png_bytes(w=80, h=60, seed=1, mode="RGBA") -> bytes:
    a = gradient(w, h, seed)
    im = Image.fromarray(a).convert(mode)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def png_declaring(w: int, h: int) -> bytes:
    """A tiny PNG whose header declares w x h 1-bit pixels: a decompression bomb that costs nothing to build."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def video_bytes(fmt="mp4", codec="libx264", pix_fmt="yuv420p", frames=12, fps=12, size=(64, 48),
                audio: bool = False, video: bool = True, flip: str | None = None) -> bytes:
    """Encode a small moving-gradient clip (and/or a tone) with PyAV. `flip` ("lr", "ud"): the picture mirrored,
    so clips meant to be different media are not near copies of each other for the dedup stage (a gradient and
    its re-encode in another codec are: their frame pHashes differ by ~10 bits, at the threshold)."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=fmt) as c:
        vs = None
        if video:
            vs = c.add_stream(codec, rate=fps)
            vs.width, vs.height, vs.pix_fmt = size[0], size[1], pix_fmt
            vs.thread_count = 1  # one encoder thread: libx264's threaded output differs run to run
        ast = c.add_stream("aac", rate=16000) if audio else None
        if vs is not None:
            for i in range(frames):
                picture = gradient(size[0], size[1], seed=i * 5)
                if flip:
                    picture = np.ascontiguousarray(np.fliplr(picture) if flip == "lr" else np.flipud(picture))
                f = av.VideoFrame.from_ndarray(picture, format="rgb24")
                f.pts, f.time_base = i, Fraction(1, fps)
                c.mux(vs.encode(f))
            c.mux(vs.encode(None))
        if ast is not None:
            t = np.arange(16000 * frames // fps) / 16000
            samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
            af = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            af.sample_rate, af.pts = 16000, None
            c.mux(ast.encode(af))
            c.mux(ast.encode(None))
    return buf.getvalue()


def wav_bytes(seconds=1.0, rate=44100, channels=2, freq=440.0, subtype="PCM_16") -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * freq * t)
    x = np.stack([tone * (0.5 + 0.5 * k / max(1, channels - 1)) for k in range(channels)], axis=1)
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


def flac_bytes(seconds: float, rate: int, channels: int, value: int = 0) -> bytes:
    """A FLAC of a constant (silence by default), written in one-second blocks: large decoded, tiny encoded."""
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", samplerate=rate, channels=channels, format="FLAC", subtype="PCM_16") as f:
        block = np.full((rate, channels), value, dtype=np.int16)
        whole, rest = divmod(int(seconds * rate), rate)
        for _ in range(whole):
            f.write(block)
        f.write(block[:rest])
    return buf.getvalue()


@functools.lru_cache(maxsize=1)
def audio_bomb() -> bytes:
    """110 s of 8-channel 192 kHz FLAC: ~170 KB on disk, 169M samples decoded (2+ GB in the float64 downmix
    the probe used to do). Within max_bytes and max_duration_s; only the decoded-size cap refuses it."""
    return flac_bytes(110, 192000, 8)


def image_bytes(fmt: str, w=72, h=48, seed=7, mode="RGB", **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(gradient(w, h, seed)).convert(mode).save(buf, fmt, **kw)
    return buf.getvalue()


def noise_after_frame(data: bytes, frame: int, seed: int) -> bytes:
    """`data` (MP4) with the payload of every video packet from `frame` on overwritten by seeded noise."""
    rng = np.random.default_rng(seed)
    out = bytearray(data)
    with av.open(io.BytesIO(data)) as c:
        packets = [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size and p.pos is not None and p.pos >= 0]
    for pos, size in packets[frame:]:
        out[pos:pos + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    return bytes(out)


@dataclass
class Corpus:
    root: Path
    outside: Path
    expected: dict[str, str] = field(default_factory=dict)  # path relative to root -> "ok" | reason
    ignored: list[str] = field(default_factory=list)  # non-media files a folder source skips
    secret: bytes = b""  # content of outside/secret.jpg, which must never be stored
    bytes_names: dict[str, bytes] = field(default_factory=dict)  # expected source_id -> the non-UTF-8 name on disk
    facts: dict[str, dict] = field(default_factory=dict)  # source_id -> media row values the row must have

    @property
    def good(self) -> list[str]:
        return sorted(k for k, v in self.expected.items() if v == "ok")

    @property
    def bad(self) -> dict[str, str]:
        return {k: v for k, v in self.expected.items() if v != "ok"}


def build_corpus(tmp: Path) -> Corpus:
    root, outside = Path(tmp) / "root", Path(tmp) / "outside"
    (root / "sub" / "deeper").mkdir(parents=True)
    outside.mkdir()
    secret = jpeg_bytes(40, 30, seed=99)
    (outside / "secret.jpg").write_bytes(secret)
    c = Corpus(root, outside, secret=secret)

    def put(rel: str, data: bytes, expect: str) -> None:
        (root / rel).write_bytes(data)
        c.expected[rel] = expect

    good_jpg = jpeg_bytes(96, 64, seed=0)
    # good media
    put("good.jpg", good_jpg, "ok")
    put("good_alpha.png", png_bytes(), "ok")
    put("sub/rotated.jpg", jpeg_bytes(90, 60, seed=2, exif_orientation=6), "ok")  # stored upright: 60x90
    put("sub/wide.png", png_bytes(2600, 40, seed=3, mode="RGB"), "ok")  # downscaled to 2048 wide
    put("good.mp4", video_bytes(), "ok")
    put("sub/legacy.avi", video_bytes(fmt="avi", codec="mpeg4", pix_fmt="yuv420p", flip="lr"), "ok")  # re-encoded
    put("sub/deeper/mjpeg.mov", video_bytes(fmt="mov", codec="mjpeg", pix_fmt="yuvj420p", flip="ud"), "ok")  # re-encoded
    put("good.wav", wav_bytes(1.0, 44100, 2), "ok")  # resampled to 16 kHz mono
    put("sub/tone.flac", (lambda: (lambda b: (sf.write(b, np.zeros((8000, 1)) + 0.1, 16000, format="FLAC"), b.getvalue())[1])(io.BytesIO()))(), "ok")
    # bad media, one per reason
    put("empty.jpg", b"", "zero_byte")
    put("truncated.jpg", good_jpg[: len(good_jpg) // 2], "truncated_image")
    png = png_bytes(120, 90, seed=4, mode="RGB")
    put("truncated.png", png[: len(png) * 2 // 3], "truncated_image")
    put("jpeg_named.png", jpeg_bytes(50, 40, seed=5), "wrong_extension")
    put("photo.txt", jpeg_bytes(50, 40, seed=6), "wrong_extension")  # media bytes behind a non-media name
    put("bomb.png", png_declaring(10_000, 10_000), "decompression_bomb")  # over our max_pixels (64M)
    put("sub/megabomb.png", png_declaring(60_000, 60_000), "decompression_bomb")  # over Pillow's own guard
    mp4 = video_bytes(frames=24)
    put("corrupt.mp4", mp4[:48] + bytes((b * 7 + 13) % 256 for b in mp4[48:600]), "corrupt_video")
    put("audio_only.mp4", video_bytes(video=False, audio=True), "no_video_stream")
    put("not_audio.wav", b"this is a text file pretending to be a wave file\n" * 20, "not_audio")
    put("riff_garbage.wav", b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256)) * 2, "not_audio")
    put("too_large.wav", wav_bytes(4.0, 44100, 2), "too_large")  # 700 KB > test cap 400 KB
    put("too_long.flac", flac_bytes(130, 8000, 1), "too_long")  # a few KB, 130 s > 120 s
    put("too_short.wav", wav_bytes(0.02, 16000, 1), "too_short")
    put("sub/dup_of_good.jpg", good_jpg, "duplicate")  # same bytes as good.jpg: stored once
    # unreadable: root cannot be locked out by chmod, so use a dangling link and a FIFO (never opened blocking)
    os.symlink(root / "sub" / "missing-target.jpg", root / "dangling.jpg")
    c.expected["dangling.jpg"] = "unreadable"
    os.mkfifo(root / "pipe.wav")
    c.expected["pipe.wav"] = "unreadable"
    # escapes_root: links out of the tree, never opened
    os.symlink("/etc/passwd", root / "passwd.jpg")
    c.expected["passwd.jpg"] = "escapes_root"
    os.symlink(outside / "secret.jpg", root / "sub" / "secret_link.jpg")
    c.expected["sub/secret_link.jpg"] = "escapes_root"
    os.symlink(outside, root / "outdir")  # a directory link out of the tree
    c.expected["outdir"] = "escapes_root"
    os.symlink(root / "sub", root / "sub_again")  # a directory link inside the tree: skipped (no cycles, no dups)
    # issue 13: names, formats, truncations and bombs that used to crash a build or pass silently
    raw = b"caf\xe9.jpg"  # a Latin-1 name: not UTF-8
    (root / os.fsdecode(raw)).write_bytes(jpeg_bytes(64, 40, seed=21))
    c.expected["caf\\xe9.jpg"] = "ok"  # stored with the byte shown escaped, as Python shows it
    c.bytes_names["caf\\xe9.jpg"] = raw
    put("scan.bmp", image_bytes("BMP", seed=22), "ok")
    put("sub/scan.tiff", image_bytes("TIFF", seed=23, compression="tiff_lzw"), "ok")
    put("sub/scan16.tif", image_bytes("TIFF", seed=24, mode="I;16"), "ok")
    tif = image_bytes("TIFF", 120, 90, seed=25)
    put("cut.tif", tif[: len(tif) // 2], "truncated_image")
    webm = video_bytes(fmt="webm", codec="libvpx-vp9", frames=40)
    put("vp9_cut.webm", webm[: len(webm) // 2], "corrupt_video")  # no frame count in WebM: duration coverage
    put("vp9.webm", webm, "ok")
    put("long_noisy.mp4", noise_after_frame(video_bytes(frames=80), 56, CORPUS_SEED), "ok")  # noise past the cap
    c.facts["long_noisy.mp4"] = {"checked_frames": 48, "num_frames": 80, "source_duration_s": None}
    put("sub/long.avi", video_bytes(fmt="avi", codec="mpeg4", frames=80), "ok")  # re-encoded, cut to the cap
    c.facts["sub/long.avi"] = {"checked_frames": 48, "num_frames": 48, "source_duration_s": 80 / 12}
    put("bomb.flac", audio_bomb(), "decompression_bomb")
    put("phone.HEIC", b"\x00\x00\x00\x18ftypheic" + bytes(64), "unsupported_type")  # known media, not ingested
    put("sub/clip.flv", b"FLV\x01\x05" + bytes(64), "unsupported_type")
    os.symlink("self_loop.jpg", root / "self_loop.jpg")
    c.expected["self_loop.jpg"] = "symlink_loop"
    os.symlink("loop_b.png", root / "sub" / "loop_a.png")
    os.symlink("loop_a.png", root / "sub" / "loop_b.png")
    c.expected["sub/loop_a.png"] = c.expected["sub/loop_b.png"] = "symlink_loop"
    # non-media files a folder source ignores
    (root / "README.txt").write_text("captions are elsewhere\n")
    (root / ".hidden.jpg").write_bytes(good_jpg)
    c.ignored = ["README.txt", ".hidden.jpg", "sub_again"]
    return c


def write_manifest_jsonl(c: Corpus, name: str = "manifest.jsonl") -> tuple[Path, dict[int, str]]:
    """A JSONL manifest over the corpus plus rows that are bad as rows; returns (path, row -> expected)."""
    lines: list[bytes] = []
    expected: dict[int, str] = {}

    def row(obj_or_raw, expect: str) -> None:
        import json

        raw = obj_or_raw if isinstance(obj_or_raw, bytes) else json.dumps(obj_or_raw).encode()
        lines.append(raw)
        expected[len(lines)] = expect

    for rel, exp in sorted(c.expected.items()):
        if rel == "outdir":
            continue  # a directory: not a manifest row
        if rel in c.bytes_names:  # the name's raw bytes in the line: that line is not UTF-8
            row(b'{"path": "' + c.bytes_names[rel] + b'"}', "not_utf8")
            continue
        row({"path": rel, "caption": f"a caption for {rel}", "licence": "cc-by-4.0"}, exp)
    row({"url": (c.root / "good.wav").as_uri(), "caption": "a tone"}, "duplicate")  # file:// URL, same bytes
    row({"caption": "no path at all"}, "missing_field")
    row({"path": ""}, "missing_field")
    row({"path": "../outside/secret.jpg"}, "escapes_root")
    row({"path": "../../outside.jpg"}, "escapes_root")
    row({"path": str(c.outside / "secret.jpg")}, "escapes_root")  # absolute path out of the root
    row({"url": "https://example.com/cat.jpg"}, "fetch_disabled")
    row(b'{"path": "good.jpg", "caption": "caf\xe9 in latin-1"}', "not_utf8")
    row(b'{"path": "good.jpg", ', "malformed_row")
    row(b"[1, 2, 3]", "malformed_row")
    row({"path": "good.mp4", "modality": "audio"}, "modality_mismatch")
    row(b'{"path": "caf\\udce9.jpg"}', "not_utf8")  # valid JSON, but a lone surrogate is not Unicode
    row(b'{"path": "good.jpg", "caption": "bad \\ud800 caption"}', "not_utf8")
    row({"path": "good.jpg\u0000.png"}, "invalid_path")  # NUL: no file can have this name
    row({"path": "scan.bmp", "caption": "long " * 40_000}, "duplicate")  # a 200 KB caption is just a caption
    path = c.root / name
    # A UTF-8 BOM first (editors write one): an encoding mark, not part of row 1. Trailing blank line: not a row.
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(lines) + b"\n\n")
    return path, expected
