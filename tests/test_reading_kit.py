"""scripts/reading_kit.py: the blind-read draw is a pure function of (dataset, salt, exclusions), keeps the
image 3 : video 3 : audio 2 split, never draws q-c-c pairs or earlier reads' pairs, and every drawn pair
gets its media on disk. Built on a tiny synthetic dataset (a few KB of media) so it runs in seconds."""
from __future__ import annotations

import importlib.util
import io
import json
import re
import tarfile
import wave
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("reading_kit", ROOT / "scripts" / "reading_kit.py")
kit = importlib.util.module_from_spec(spec)
spec.loader.exec_module(kit)

COUNTS = {"image": 12, "video": 12, "audio": 8}  # non-q-c-c pairs per modality; plus q-c-c decoys


def _png(i: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 12), (i * 20 % 255, 80, 160)).save(buf, "PNG")
    return buf.getvalue()


def _mp4() -> bytes:
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:
        s = c.add_stream("mpeg4", rate=8)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        for k in range(12):  # 1.5 s at 8 fps
            arr = np.full((32, 32, 3), k * 20, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return buf.getvalue()


def _wav() -> bytes:
    buf = io.BytesIO()
    t = np.arange(8000) / 16000
    with wave.open(buf, "w") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes((np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16).tobytes())
    return buf.getvalue()


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("kit")
    ds, run = root / "ds", root / "run"
    (ds / "pairs").mkdir(parents=True)
    (ds / "shards" / "train").mkdir(parents=True)
    (run / "ingest" / "all").mkdir(parents=True)
    media = {"image": ("png", _png), "video": ("mp4", lambda i: _mp4()), "audio": ("wav", lambda i: _wav())}
    rows, ingest = [], []
    for mod, n in COUNTS.items():
        ext, make = media[mod]
        with tarfile.open(ds / "shards" / "train" / f"{mod}-000000.tar", "w") as tf:
            for i in range(n):
                key = f"{mod}{i:03d}".ljust(16, "k")
                _add(tf, f"{key}.{ext}", make(i))
                _add(tf, f"{key}.json", b"{}")
                g = {"sounds": [{"id": "s1", "source": "bell", "start": 0.1, "end": 0.4, "loudness": "loud",
                                 "pitch": "high"}]} if mod == "audio" else {"objects": [{"name": "ball"}]}
                ingest.append({"media_key": key, "grounding": json.dumps(g)})
                for qcc in (False, True):
                    rows.append({"pair_id": f"{mod}-{i}-{int(qcc)}", "modality": mod, "media_key": key,
                                 "instruction_type": "brief", "instruction": "Describe it.", "chosen": "A.",
                                 "rejected": "B.", "rejection_strategy": "weak_model", "length_constraint": None,
                                 "length_key": None, "is_qcc": qcc, "split": "train", "check_passed": True})
    pq.write_table(pa.Table.from_pylist(rows), ds / "pairs" / "train-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist(ingest), run / "ingest" / "all" / "part-0.parquet")
    return ds, run


def _ids(folder: Path) -> list[str]:
    return [json.loads(l)["pair_id"] for l in (folder / "verdicts_template.jsonl").read_text().splitlines()]


def test_allocation_is_three_three_two_and_passes_on_shortfalls():
    assert kit.allocate(40, {"image": 99, "video": 99, "audio": 99}) == {"image": 15, "video": 15, "audio": 10}
    assert kit.allocate(52, {"image": 99, "video": 99, "audio": 99}) == {"image": 20, "video": 19, "audio": 13}
    # only 3 audio pairs left: the other 7 audio places go to image and video, still 3 : 3
    assert kit.allocate(40, {"image": 99, "video": 99, "audio": 3}) == {"image": 19, "video": 18, "audio": 3}


def test_draw_is_deterministic_stratified_excludes_and_writes_media(dataset, tmp_path):
    ds, run = dataset
    a1 = kit.build(ds, run, tmp_path / "a1", 8, "salt-a", [])
    a2 = kit.build(ds, run, tmp_path / "a2", 8, "salt-a", [])
    assert _ids(tmp_path / "a1") == _ids(tmp_path / "a2")  # same salt, same sample
    other = kit.build(ds, run, tmp_path / "c", 8, "salt-c", [])
    assert {r["pair_id"] for r in other} != {r["pair_id"] for r in a1}  # the salt matters

    assert [r["modality"] for r in a1].count("image") == 3
    assert [r["modality"] for r in a1].count("video") == 3
    assert [r["modality"] for r in a1].count("audio") == 2
    assert not any(r["is_qcc"] for r in a1)
    assert all(r["salt"] == "salt-a" and r["compliant"] is None and r["reasons"] == [] for r in a1)

    # the second read skips every pair of the first, given either the file or the folder; it uses the
    # first read's salt so that, without the exclusion, it would draw exactly the same pairs
    b = kit.build(ds, run, tmp_path / "b", 8, "salt-a", [str(tmp_path / "a1" / "verdicts_template.jsonl")])
    assert len(b) == 8 and not {r["pair_id"] for r in b} & set(_ids(tmp_path / "a1"))
    b2 = kit.build(ds, run, tmp_path / "b2", 8, "salt-a", [str(tmp_path / "a1")])
    assert _ids(tmp_path / "b2") == _ids(tmp_path / "b")

    md = (tmp_path / "a1" / "pairs.md").read_text()
    paths = [Path(p) for p in re.findall(r"`(/[^`]+\.png)`", md)]
    assert len(paths) == 3 * 1 + 3 * 4 + 2 * 1  # image png; video sheet+first+middle+last; spectrogram
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)
    for r in a1:
        assert (tmp_path / "a1" / "grounding" / f"{r['pair_id']}.json").is_file()
        assert json.loads(r["grounding"])  # the ingest grounding is joined on media_key
    # audio grounding is printed for the reader; image/video grounding is not
    assert "bell" in md and "ball" not in md
    assert (tmp_path / "a1" / "READY").exists()
