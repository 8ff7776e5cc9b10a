"""Folder / manifest / hf sources: batching, determinism, selection, dedup, and frame sampling."""
from __future__ import annotations

import json

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from acd.media import load_limits, sample_frames
from acd.sources.factory import iter_all, make_source
from acd.sources.folder import FolderSource
from acd.sources.hf import HFSource
from acd.sources.manifest import ManifestSource
from corpus import TEST_LIMITS, build_corpus, jpeg_bytes, png_bytes, video_bytes, wav_bytes


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("corpus"))


def collect(src, media_dir):
    media, quarantine = [], []
    for res in iter_all(src, media_dir):
        media += res.media
        quarantine += res.quarantine
    return media, quarantine


def test_make_source_dispatches(corpus, tmp_path):
    (tmp_path / "m.jsonl").write_text("")
    assert isinstance(make_source({"kind": "folder", "root": str(corpus.root)}, 0), FolderSource)
    assert isinstance(make_source({"kind": "manifest", "path": str(tmp_path / "m.jsonl")}, 0), ManifestSource)
    assert make_source({"kind": "manifest", "path": str(tmp_path / "m.jsonl")}, 0).batches() == []


def test_folder_batches_are_deterministic_and_lose_nothing(corpus, tmp_path):
    cfg = {"kind": "folder", "root": str(corpus.root), "batch_size": 4, "limits": TEST_LIMITS}
    a, b = make_source(cfg, 0), make_source(cfg, 1)
    n = len(corpus.expected)
    assert a.batches() == b.batches() == [f"files-{i:04d}" for i in range((n + 3) // 4)]
    ra = [a.read(x, tmp_path / "r1" / "media") for x in a.batches()]
    rb = [b.read(x, tmp_path / "r2" / "media") for x in b.batches()]
    assert [(r.media, r.quarantine) for r in ra] == [(r.media, r.quarantine) for r in rb]
    media = [m for r in ra for m in r.media]
    quarantine = [q for r in ra for q in r.quarantine]
    # dup_of_good.jpg and good.jpg land in different batches: both are media rows with one key (the ingest
    # stage dedups by key); every other outcome is as with one big batch
    assert len(media) + len(quarantine) == n
    keys = [m["media_key"] for m in media]
    assert len(keys) - len(set(keys)) == 1 and "sub/dup_of_good.jpg" in {m["source_id"] for m in media}
    stored = [p for p in (tmp_path / "r1" / "media").rglob("*") if p.is_file()]
    assert len(stored) == len(set(keys))  # content-addressed: stored once


def test_folder_include_and_non_recursive(corpus, tmp_path):
    src = FolderSource({"root": str(corpus.root), "include": ["*.jpg"], "recursive": False}, 0)
    names = [rel for rel, _ in src.candidates()]
    assert names and all(n.endswith(".jpg") and "/" not in n for n in names)
    assert "sub/rotated.jpg" not in names and ".hidden.jpg" not in names


def test_sample_frames_even_and_bounded(tmp_path):
    data = video_bytes(frames=24, fps=12)
    frames = sample_frames(data, 4, load_limits())
    assert len(frames) == 4 and all(f.size == (64, 48) and f.mode == "RGB" for f in frames)
    # the clip's blue channel moves with the frame index (seed = 5*i): sampled frames must be distinct, in order
    means = [sum(f.getpixel((0, 0))) for f in frames]
    assert len(set(means)) == 4
    capped = sample_frames(data, 3, load_limits({"video": {"max_decode_frames": 2}}))
    assert len(capped) == 3  # never decodes past the cap, still returns n frames


def _hf_dataset(tmp_path):
    img = jpeg_bytes(64, 48, seed=11)
    feats = datasets.Features({"image": datasets.Image(), "caption": datasets.Value("string")})
    ds = datasets.Dataset.from_dict(
        {"image": [{"bytes": img, "path": "a.jpg"}, {"bytes": png_bytes(), "path": "b.png"},
                   {"bytes": img, "path": "again.jpg"}, None, {"bytes": b"\xff\xd8\xff garbage", "path": "c.jpg"}],
         "caption": ["first", "second", "dup", "none", "bad"]}, features=feats)
    ds.save_to_disk(str(tmp_path / "ds"))
    return img


def test_hf_save_to_disk_rows_reasons_and_captions(tmp_path):
    _hf_dataset(tmp_path)
    src = HFSource({"path": str(tmp_path / "ds"), "caption_column": "caption", "batch_size": 2}, 0)
    assert src.batches() == ["rows-0000", "rows-0001", "rows-0002"]
    media, quarantine = collect(src, tmp_path / "run" / "media")
    assert [m["source_id"] for m in media] == ["train:0", "train:1", "train:2"]
    assert [(m["width"], m["height"]) for m in media] == [(64, 48), (80, 60), (64, 48)]
    assert media[0]["media_key"] == media[2]["media_key"]  # different batches: the ingest stage dedups
    assert json.loads(media[1]["existing_captions"]) == ["second"]
    assert {q["source_id"]: q["reason"] for q in quarantine} == {"train:3": "missing_field", "train:4": "corrupt_image"}


def test_hf_streaming_parquet_audio_and_path_cells(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "tone.wav").write_bytes(wav_bytes(0.5, 22050, 2))
    # Written with pyarrow plus the `huggingface` schema metadata (what Dataset.to_parquet writes): encoding
    # Audio through `datasets` itself would need torchcodec, which this project does not install.
    cells = [{"bytes": wav_bytes(0.5, 8000, 1), "path": None}, {"bytes": None, "path": "tone.wav"},
             {"bytes": None, "path": "../../etc/passwd"}]
    feats = {"audio": {"_type": "Audio"}, "text": {"dtype": "string", "_type": "Value"}}
    table = pa.table({"audio": pa.array(cells, pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                      "text": ["a", "b", "c"]})
    table = table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": feats}})})
    pq.write_table(table, data_dir / "train.parquet")
    cfg = {"kind": "hf", "path": "parquet", "data_files": {"train": str(data_dir / "train.parquet")},
           "root": str(data_dir), "streaming": True, "caption_column": "text", "batch_size": 2}
    src = make_source(cfg, 0)
    assert src.batches() == ["rows-0000", "rows-0001"]
    media, quarantine = collect(src, tmp_path / "run" / "media")
    assert [(m["source_id"], m["modality"], m["sample_rate"], m["channels"]) for m in media] == [
        ("train:0", "audio", 16000, 1), ("train:1", "audio", 16000, 1)]
    assert media[1]["duration_s"] == pytest.approx(0.5, abs=1e-3)
    assert [(q["source_id"], q["reason"]) for q in quarantine] == [("train:2", "escapes_root")]


def test_make_source_takes_the_typed_section_or_a_mapping(corpus, tmp_path):
    from acd import recipe_model
    from acd.recipe_model import RecipeError

    section = recipe_model.FolderSource(kind="folder", root=str(corpus.root), batch_size=4)
    src = make_source(section, 0)
    assert isinstance(src, FolderSource) and src.batch_size == 4 and src.limits == load_limits()
    assert (src.recursive, src.include, src.trust_sniffed) == (True, [], False)  # the model's defaults
    with pytest.raises(ValueError, match=r"unknown source kind 'foldr' \(synthetic, folder, manifest, hf\)"):
        make_source({"kind": "foldr", "root": str(corpus.root)}, 0)
    with pytest.raises(RecipeError, match="recursve"):  # an unknown key is refused, not ignored
        make_source({"kind": "folder", "root": str(corpus.root), "recursve": False}, 0)
    with pytest.raises(RecipeError):  # a section's own class refuses another kind
        FolderSource({"kind": "manifest", "root": str(corpus.root)}, 0)
    m = ManifestSource({"path": str(tmp_path / "m.jsonl")}, 0)
    assert (m.allow_http, m.http_timeout_s, m.batch_size, m.caption_columns) == (False, 20.0, 256, None)


def test_both_caption_spellings_and_which_wins(tmp_path):
    path = str(tmp_path / "m.jsonl")
    assert ManifestSource({"path": path, "caption_column": "c"}, 0).caption_columns == ["c"]
    assert ManifestSource({"path": path, "caption_columns": ["a", "b"], "caption_column": "c"}, 0).caption_columns == ["a", "b"]
    assert HFSource({"path": path, "caption_columns": ["a", "b"]}, 0).caption_columns == ["a", "b"]
    assert HFSource({"path": path, "caption_columns": ["a", "b"], "caption_column": "c"}, 0).caption_columns == ["c"]
    assert HFSource({"path": path}, 0).caption_columns == []


def test_limits_override_single_keys_as_the_deep_merge_did():
    defaults = load_limits()
    lim = load_limits({"video": {"max_side": 64, "playable": {"mp4": []}}, "time": {"max_seconds_per_file": 1.5}})
    assert lim.video.max_side == 64 and lim.video.max_decode_frames == defaults.video.max_decode_frames
    assert lim.video.reencode == defaults.video.reencode and lim.image == defaults.image
    # `playable` is a free mapping, merged over the file's like every other key (webm stays playable)
    assert lim.video.playable == {"mp4": [], "webm": defaults.video.playable["webm"]}
    assert lim.time.max_seconds_per_file == 1.5  # a duration may be fractional though the file writes 20
    assert load_limits(lim) is lim
