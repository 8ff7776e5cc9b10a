"""Fuzzing the probes with mutated valid files (truncations, bit flips, random headers, splices): the only
exception allowed out is ProbeError with a known reason, and every call finishes within a time bound."""
from __future__ import annotations

import csv
import io
import json
import os
import struct
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acd.media import REASONS, ProbeError, load_limits
from acd.media.item import probe_bytes
from corpus import jpeg_bytes, png_bytes, video_bytes, wav_bytes

LIMITS = load_limits({"video": {"max_decode_frames": 200}, "time": {"max_seconds_per_file": 1.5}})
BOUND_S = 2.0

SEEDS = {
    "jpg": jpeg_bytes(48, 32, exif_orientation=6),
    "png": png_bytes(40, 30),
    "mp4": video_bytes(frames=8, audio=True),
    "avi": video_bytes(fmt="avi", codec="mpeg4", frames=8),
    "wav": wav_bytes(0.3, 22050, 2),
    "flac": None,  # built below (soundfile)
}


def _flac() -> bytes:
    import io

    import numpy as np
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.linspace(-0.5, 0.5, 4000), 8000, format="FLAC")
    return buf.getvalue()


SEEDS["flac"] = _flac()
for _ext, _data in SEEDS.items():  # warm-up: first-use imports (scipy.signal ~1 s) are not probe time
    probe_bytes(_data, _ext, LIMITS)


@st.composite
def mutated(draw, base: bytes):
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["truncate", "flip", "header", "splice", "zero_run"]))
        if not data:
            break
        if op == "truncate":
            del data[draw(st.integers(0, len(data) - 1)):]
        elif op == "flip":
            for _ in range(draw(st.integers(1, 16))):
                i = draw(st.integers(0, len(data) - 1))
                data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "header":
            n = draw(st.integers(1, min(64, len(data))))
            data[:n] = draw(st.binary(min_size=n, max_size=n))
        elif op == "splice":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=256))
        else:
            i = draw(st.integers(0, len(data) - 1))
            n = draw(st.integers(1, 512))
            data[i:i + n] = bytes(min(n, len(data) - i))
    return bytes(data)


def _check(data: bytes, ext: str) -> None:
    t = time.monotonic()
    try:
        p = probe_bytes(data, ext, LIMITS)
        assert p.data and p.modality in ("image", "video", "audio")
    except ProbeError as exc:
        assert exc.reason in REASONS
    assert time.monotonic() - t < BOUND_S


FUZZ = settings(max_examples=100, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize("ext", ["jpg", "png"])
def test_image_probe_fuzz(ext):
    @FUZZ
    @given(mutated(SEEDS[ext]))
    def run(data):
        _check(data, ext)

    run()


@pytest.mark.parametrize("ext", ["mp4", "avi"])
def test_video_probe_fuzz(ext):
    @FUZZ
    @given(mutated(SEEDS[ext]))
    def run(data):
        _check(data, ext)

    run()


@pytest.mark.parametrize("ext", ["wav", "flac"])
def test_audio_probe_fuzz(ext):
    @FUZZ
    @given(mutated(SEEDS[ext]))
    def run(data):
        _check(data, ext)

    run()


@FUZZ
@given(st.binary(max_size=2048), st.sampled_from(["jpg", "png", "webp", "gif", "mp4", "mov", "webm", "wav", "mp3", "ogg", "txt"]))
def test_random_bytes_under_any_name(data, ext):
    _check(data, ext)


# --- issue 13: audio headers, file names as bytes, manifest fields ----------------------------------------------

AUDIO_BOUND_S = 3.0  # a header that declares hours of 64-channel audio must be refused, not decoded


def _wav_with(channels: int, rate: int, bits: int, data_size: int, body: bytes) -> bytes:
    block = max(1, channels * bits // 8)
    fmt = struct.pack("<HHIIHH", 1, channels, rate, (rate * block) & 0xFFFFFFFF, block, bits)
    return (b"RIFF" + struct.pack("<I", 36 + len(body)) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", data_size) + body)


def _flac_with(base: bytes, rate: int, channels: int, bps: int, total: int) -> bytes:
    """`base` (a real FLAC) with its STREAMINFO's rate (20 bits), channels-1 (3), bps-1 (5), total samples (36)
    rewritten; STREAMINFO's packed fields start 10 bytes into its body (after min/max block and frame sizes)."""
    packed = (rate & 0xFFFFF) << 44 | ((channels - 1) & 0x7) << 41 | ((bps - 1) & 0x1F) << 36 | (total & 0xFFFFFFFFF)
    out = bytearray(base)
    at = 4 + 4 + 10  # "fLaC", the metadata block header, then min/max block size and frame size
    out[at:at + 8] = packed.to_bytes(8, "big")
    return bytes(out)


def _check_audio(data: bytes, ext: str) -> None:
    t = time.monotonic()
    try:
        p = probe_bytes(data, ext, LIMITS)
        assert p.modality == "audio" and p.facts["duration_s"] <= float(LIMITS.audio.max_duration_s) + 1
    except ProbeError as exc:
        assert exc.reason in REASONS
    assert time.monotonic() - t < AUDIO_BOUND_S


@FUZZ
@given(st.integers(0, 70), st.sampled_from([0, 1, 1000, 8000, 44100, 192000, 768000, 4_000_000_000]),
       st.sampled_from([0, 8, 16, 24, 32, 12]), st.integers(0, 2**32 - 1), st.binary(max_size=4096))
def test_audio_header_fuzz_wav(channels, rate, bits, data_size, body):
    """A WAV header can claim any channel count, rate, sample size and data length over a small body."""
    _check_audio(_wav_with(channels, rate, bits, data_size, body), "wav")


@FUZZ
@given(st.integers(1, 2**20 - 1), st.integers(1, 8), st.integers(4, 32), st.integers(0, 2**36 - 1))
def test_audio_header_fuzz_flac(rate, channels, bps, total):
    """FLAC STREAMINFO rewritten: any rate, channel count, depth and declared length over real frames."""
    _check_audio(_flac_with(SEEDS["flac"], rate, channels, bps, total), "flac")


NAME_BYTES = st.binary(min_size=1, max_size=40).filter(lambda b: b"/" not in b and b"\x00" not in b
                                                        and b not in (b".", b"..") and not b.startswith(b"."))


@settings(max_examples=60, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(NAME_BYTES, min_size=1, max_size=4, unique=True), st.sampled_from([".jpg", ".JPG", ".png", ""]))
def test_folder_names_as_bytes(tmp_path, names, suffix):
    """Any file name the OS allows (not UTF-8, control characters, lone continuation bytes): every file is
    exactly one row, and the rows make Arrow tables (no encode error loses the batch)."""
    from acd.records import MEDIA_SCHEMA, QUARANTINE_SCHEMA, rows_to_table
    from acd.sources.folder import FolderSource

    root = Path(tempfile.mkdtemp(dir=tmp_path))
    for i, raw in enumerate(names):
        (root / os.fsdecode(raw + suffix.encode())).write_bytes(jpeg_bytes(16, 12, seed=i))
    src = FolderSource({"root": str(root), "batch_size": 3}, 0)
    media, quarantine = [], []
    for b in src.batches():
        res = src.read(b, root.parent / "run" / "media")
        media += res.media
        quarantine += res.quarantine
    ids = [m["source_id"] for m in media] + [q["source_id"] for q in quarantine]
    assert len(ids) == len(names) == len(set(ids))
    assert not [q for q in quarantine if q["reason"] == "internal_error"]
    rows_to_table(media, MEDIA_SCHEMA), rows_to_table(quarantine, QUARANTINE_SCHEMA)
    for sid in ids:
        sid.encode("utf-8")  # storable


SURROGATE = st.integers(0xD800, 0xDFFF).map(chr)
FIELD = st.one_of(
    st.text(max_size=30),
    st.lists(st.one_of(st.text(max_size=4), SURROGATE, st.just("\x00")), max_size=8).map("".join),
    st.integers(0, 300_000).map(lambda n: "w" * n),  # past csv's 128 KiB default field limit
    st.sampled_from(["good.jpg", "sub/rotated.jpg", "good.jpg\x00.png", "caf\udce9.jpg", "../outside/secret.jpg"]),
)


def _manifest_check(path: Path, root: Path, n_rows: int | None) -> None:
    from acd.records import MEDIA_SCHEMA, QUARANTINE_SCHEMA, rows_to_table
    from acd.sources.manifest import ManifestSource

    src = ManifestSource({"path": str(path), "root": str(root), "limits": LIMITS}, 0)
    media, quarantine = [], []
    for b in src.batches():
        res = src.read(b, path.parent / "run" / "media")
        media += res.media
        quarantine += res.quarantine
    assert not [q for q in quarantine if q["reason"] == "internal_error"], quarantine
    assert all(q["reason"] in REASONS for q in quarantine)
    rows_to_table(media, MEDIA_SCHEMA), rows_to_table(quarantine, QUARANTINE_SCHEMA)
    rows = [x["source_id"].split(":")[1] for x in media + quarantine]
    assert len(rows) == len(set(rows))  # one outcome per row
    if n_rows is not None:
        assert len(rows) == n_rows


@pytest.fixture(scope="module")
def manifest_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mroot")
    (root / "sub").mkdir()
    (root / "good.jpg").write_bytes(jpeg_bytes(20, 16, seed=3))
    (root / "sub" / "rotated.jpg").write_bytes(jpeg_bytes(16, 20, seed=4, exif_orientation=6))
    return root


MANIFEST_FUZZ = settings(max_examples=60, deadline=None, database=None, derandomize=True,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@MANIFEST_FUZZ
@given(st.lists(st.fixed_dictionaries({"path": FIELD, "caption": FIELD}, optional={"licence": FIELD}),
                min_size=1, max_size=4), st.booleans())
def test_manifest_jsonl_field_fuzz(manifest_root, rows, bom):
    """Surrogate escapes, NUL, huge values in any field, with or without a BOM: one outcome per row."""
    path = Path(tempfile.mkdtemp(dir=manifest_root)) / "m.jsonl"
    lines = [json.dumps(r).encode() for r in rows]  # ensure_ascii: lone surrogates become \\udXXX escapes
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + b"\n".join(lines) + b"\n")
    _manifest_check(path, manifest_root, len(rows))


@MANIFEST_FUZZ
@given(st.lists(st.tuples(FIELD, FIELD), min_size=1, max_size=4), st.booleans())
def test_manifest_csv_field_fuzz(manifest_root, rows, bom):
    """The same fields in CSV; a surrogate is written as the bytes it stands for (surrogateescape), so those
    rows are not UTF-8; quoting, NUL and 300k-character fields must not stop the parse."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "caption"])
    for r in rows:
        w.writerow(r)
    data = buf.getvalue().encode("utf-8", "surrogatepass")
    path = Path(tempfile.mkdtemp(dir=manifest_root)) / "m.csv"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    _manifest_check(path, manifest_root, None)
