"""Issue 6: every bad input lands in quarantine with its specific reason, every good one in the media table,
nothing is lost or duplicated, and nothing outside the source root is ever opened."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path

import av
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from acd.media.errors import REASONS
from acd.records import MEDIA_SCHEMA, QUARANTINE_SCHEMA, rows_to_table
from acd.sources.factory import iter_all, make_source
from corpus import TEST_LIMITS, build_corpus, write_manifest_jsonl


def ingest(config: dict, run: Path):
    src = make_source(config, seed=0)
    media, quarantine = [], []
    for res in iter_all(src, run / "media"):
        media += res.media
        quarantine += res.quarantine
    return media, quarantine


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def folder_run(corpus, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    return run, *ingest({"kind": "folder", "root": str(corpus.root), "limits": TEST_LIMITS}, run)


def test_every_reason_in_the_corpus_is_a_known_code(corpus):
    assert set(corpus.bad.values()) <= set(REASONS)
    needed = {"zero_byte", "truncated_image", "wrong_extension", "decompression_bomb", "corrupt_video",
              "no_video_stream", "not_audio", "too_large", "unreadable", "escapes_root", "symlink_loop"}
    assert needed <= set(corpus.bad.values())


def test_folder_every_input_accounted_for_with_its_reason(corpus, folder_run):
    run, media, quarantine = folder_run
    assert sorted(m["source_id"] for m in media) == corpus.good
    assert {q["source_id"]: q["reason"] for q in quarantine} == corpus.bad
    assert len(media) + len(quarantine) == len(corpus.expected)  # nothing lost, nothing twice
    seen = {m["source_id"] for m in media} | {q["source_id"] for q in quarantine}
    assert not seen & set(corpus.ignored)
    assert len({m["media_key"] for m in media}) == len(media)
    assert all(q["stage"] == "ingest" and q["detail"] for q in quarantine)


def test_folder_rows_fit_the_contract_and_files_match_their_keys(folder_run):
    run, media, quarantine = folder_run
    assert rows_to_table(media, MEDIA_SCHEMA).num_rows == len(media)
    assert rows_to_table(quarantine, QUARANTINE_SCHEMA).num_rows == len(quarantine)
    for m in media:
        data = (run / m["uri"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == m["media_key"] and len(data) == m["bytes"]
        assert m["grounding"] is None and m["source"] == "folder"


def test_folder_normalisation_facts(corpus, folder_run):
    run, media, _ = folder_run
    by = {m["source_id"]: m for m in media}
    assert (by["good.jpg"]["width"], by["good.jpg"]["height"]) == (96, 64)
    assert by["good.jpg"]["media_key"] == hashlib.sha256((corpus.root / "good.jpg").read_bytes()).hexdigest()  # kept as-is
    assert (by["sub/rotated.jpg"]["width"], by["sub/rotated.jpg"]["height"]) == (60, 90)  # EXIF 6 applied
    assert (by["sub/wide.png"]["width"], by["sub/wide.png"]["height"]) == (2048, 32)  # longest side capped
    for sid in ("sub/legacy.avi", "sub/deeper/mjpeg.mov", "good.mp4"):
        m = by[sid]
        assert m["ext"] == "mp4" and m["mime"] == "video/mp4" and m["num_frames"] == 12
        assert m["duration_s"] == pytest.approx(1.0, abs=0.1) and m["fps"] == pytest.approx(12)
        with av.open(str(run / m["uri"])) as c:
            vs = c.streams.video[0]
            assert vs.codec_context.name == "h264"
            assert next(c.decode(vs)).format.name == "yuv420p"
    for sid in ("good.wav", "sub/tone.flac"):
        m = by[sid]
        info = sf.info(str(run / m["uri"]))
        assert (m["sample_rate"], m["channels"]) == (16000, 1) == (info.samplerate, info.channels)
        assert info.subtype == "PCM_16"
    assert by["good.wav"]["duration_s"] == pytest.approx(1.0, abs=1e-3)


def test_nothing_outside_the_root_is_opened_or_stored(corpus, tmp_path, monkeypatch):
    opened: list[str] = []
    real_open = os.open

    def spy(path, *a, **kw):
        opened.append(os.path.realpath(path))
        return real_open(path, *a, **kw)

    monkeypatch.setattr(os, "open", spy)
    mpath, _ = write_manifest_jsonl(corpus, "spy.jsonl")
    for cfg in ({"kind": "folder", "root": str(corpus.root), "limits": TEST_LIMITS},
                {"kind": "manifest", "path": str(mpath), "limits": TEST_LIMITS}):
        media, quarantine = ingest(cfg, tmp_path)
        assert any(q["reason"] == "escapes_root" for q in quarantine)
    monkeypatch.undo()
    outside = os.path.realpath(corpus.outside)
    assert opened, "the spy saw no opens"
    assert not [p for p in opened if p.startswith(outside) or p.startswith("/etc/")]
    stored = {hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / "media").rglob("*") if p.is_file()}
    assert hashlib.sha256(corpus.secret).hexdigest() not in stored
    assert hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest() not in stored


def test_manifest_jsonl_reasons_rows_and_captions(corpus, tmp_path):
    mpath, expected = write_manifest_jsonl(corpus)
    media, quarantine = ingest({"kind": "manifest", "path": str(mpath), "limits": TEST_LIMITS}, tmp_path)
    row = lambda sid: int(sid.split(":")[1])  # noqa: E731  "manifest.jsonl:<row>[:<path>]"
    got = {row(m["source_id"]): "ok" for m in media} | {row(q["source_id"]): q["reason"] for q in quarantine}
    assert got == expected
    assert len(media) + len(quarantine) == len(expected)
    by = {m["source_id"].split(":", 2)[2]: m for m in media}
    assert json.loads(by["good.jpg"]["existing_captions"]) == ["a caption for good.jpg"]
    assert by["good.jpg"]["licence"] == "cc-by-4.0" and by["good.jpg"]["grounding"] is None
    details = {row(q["source_id"]): q["detail"] for q in quarantine}
    missing = [n for n, r in expected.items() if r == "missing_field"]
    assert all(details[n].startswith(f"row {n}:") for n in missing)


def test_manifest_csv_not_utf8_and_missing_field(corpus, tmp_path):
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "caption", "modality"])
    w.writerow(["good.jpg", "a gradient, with a comma", "image"])
    w.writerow(["", "no path", "image"])
    w.writerow(["sub/rotated.jpg", "multi\nline caption", "image"])
    w.writerow(["../outside/secret.jpg", "escape", "image"])
    raw = buf.getvalue().encode() + b"good.wav,caf\xe9 latin-1,audio\r\n" + b"good.wav,tone,audio\r\n"
    path = corpus.root / "m.csv"
    path.write_bytes(raw)
    media, quarantine = ingest({"kind": "manifest", "path": str(path), "modality_column": "modality",
                                "limits": TEST_LIMITS}, tmp_path)
    assert sorted(m["source_id"] for m in media) == ["m.csv:2:good.jpg", "m.csv:5:sub/rotated.jpg", "m.csv:8:good.wav"]
    assert {q["source_id"]: q["reason"] for q in quarantine} == {
        "m.csv:3": "missing_field", "m.csv:6:../outside/secret.jpg": "escapes_root", "m.csv:7": "not_utf8"}
    rot = next(m for m in media if "rotated" in m["source_id"])
    assert json.loads(rot["existing_captions"]) == ["multi\nline caption"]


def test_manifest_parquet_with_url_column(corpus, tmp_path):
    table = pa.table({"url": [(corpus.root / "good.jpg").as_uri(), None, "s3://bucket/x.jpg"],
                      "captions": [["one", "two"], ["x"], None]})
    path = tmp_path / "m.parquet"
    pq.write_table(table, path)
    media, quarantine = ingest({"kind": "manifest", "path": str(path), "root": str(corpus.root)}, tmp_path)
    assert [json.loads(m["existing_captions"]) for m in media] == [["one", "two"]]
    assert sorted(q["reason"] for q in quarantine) == ["missing_field", "unsupported_type"]


def test_manifest_http_code_path_without_network(corpus, tmp_path):
    path = tmp_path / "h.jsonl"
    path.write_text(json.dumps({"url": "http://127.0.0.1:9/cat.jpg"}) + "\n")
    _, q = ingest({"kind": "manifest", "path": str(path), "allow_http": True, "http_timeout_s": 2}, tmp_path)
    assert [x["reason"] for x in q] == ["fetch_failed"]
    _, q = ingest({"kind": "manifest", "path": str(path)}, tmp_path)
    assert [x["reason"] for x in q] == ["fetch_disabled"]


def test_wrong_extension_can_be_accepted_by_sniffed_type(corpus, tmp_path):
    media, quarantine = ingest({"kind": "folder", "root": str(corpus.root), "limits": TEST_LIMITS,
                                "on_wrong_extension": "accept"}, tmp_path)
    by = {m["source_id"]: m for m in media}
    assert by["jpeg_named.png"]["ext"] == "jpg" and by["photo.txt"]["mime"] == "image/jpeg"
    assert "wrong_extension" not in {q["reason"] for q in quarantine}
    assert len(media) + len(quarantine) == len(corpus.expected)


def test_manifest_csv_huge_field_bom_and_surrogate_free_rows(corpus, tmp_path):
    """Issue 13: a field over csv's 128 KiB default limit is a caption like any other; a BOM is not a column
    name; the process-wide csv limit is restored afterwards."""
    before = csv.field_size_limit()
    caption = "x" * 300_000
    raw = "\ufeffpath,caption\r\ngood.jpg," + caption + "\r\nscan.bmp,short\r\n"
    path = corpus.root / "huge.csv"
    path.write_bytes(raw.encode())
    media, quarantine = ingest({"kind": "manifest", "path": str(path), "limits": TEST_LIMITS}, tmp_path)
    assert quarantine == [] and [m["source_id"] for m in media] == ["huge.csv:2:good.jpg", "huge.csv:3:scan.bmp"]
    assert json.loads(media[0]["existing_captions"]) == [caption]
    assert csv.field_size_limit() == before


def test_manifest_parquet_corrupt_file_and_row_group(corpus, tmp_path):
    """A Parquet manifest whose footer is gone is one corrupt_manifest row (its rows are unknown); a row group
    that does not read is one row naming its row range, and the rows after it keep their numbers."""
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1" + b"\x00" * 100)
    media, quarantine = ingest({"kind": "manifest", "path": str(bad), "root": str(corpus.root)}, tmp_path)
    assert media == [] and [(q["source_id"], q["reason"]) for q in quarantine] == [("bad.parquet", "corrupt_manifest")]
    assert "Parquet" in quarantine[0]["detail"]

    table = pa.table({"path": ["good.jpg", "scan.bmp", "good.mp4", "vp9.webm", "good_alpha.png", "sub/tone.flac"]})
    path = corpus.root / "groups.parquet"  # relative paths resolve against the manifest's folder
    pq.write_table(table, path, row_group_size=2, compression="snappy")
    meta = pq.ParquetFile(path).metadata
    col = meta.row_group(1).column(0)
    start = col.dictionary_page_offset or col.data_page_offset
    data = bytearray(path.read_bytes())
    data[start:start + col.total_compressed_size] = b"\xff" * col.total_compressed_size  # group 1's pages
    path.write_bytes(bytes(data))
    media, quarantine = ingest({"kind": "manifest", "path": str(path), "root": str(corpus.root),
                                "limits": TEST_LIMITS}, tmp_path)
    assert [m["source_id"] for m in media] == ["groups.parquet:1:good.jpg", "groups.parquet:2:scan.bmp",
                                               "groups.parquet:5:good_alpha.png", "groups.parquet:6:sub/tone.flac"]
    assert [(q["source_id"], q["reason"]) for q in quarantine] == [("groups.parquet:3-4", "corrupt_manifest")]
    assert quarantine[0]["detail"].startswith("rows 3-4: row group 1 does not read")


def test_manifest_http_buffers_only_up_to_the_urls_modality_cap(tmp_path):
    """allow_http: a .jpg URL is cut off at max_bytes.image, not at the largest cap (video, 1 GiB); a declared
    Content-Length over the cap is refused before the body is read."""
    import http.server
    import threading

    sent = {"bytes": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            head = b"\xff\xd8\xff\xe0" + b"\x00" * 60  # a JPEG's first bytes, then more than the cap
            self.send_response(200)
            if self.path.startswith("/declared"):
                self.send_header("Content-Length", str(50_000_000))
            self.end_headers()
            try:
                self.wfile.write(head)
                sent["bytes"] += len(head)
                for _ in range(200):  # up to ~13 MB, in 64 KB chunks, while the client keeps reading
                    self.wfile.write(b"\x00" * 65536)
                    sent["bytes"] += 65536
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        port = httpd.server_address[1]
        path = tmp_path / "h.jsonl"
        path.write_text(json.dumps({"url": f"http://127.0.0.1:{port}/big.jpg"}) + "\n"
                        + json.dumps({"url": f"http://127.0.0.1:{port}/declared.jpg"}) + "\n")
        limits = {"max_bytes": {"image": 1_000_000, "video": 1 << 30}}
        _, q = ingest({"kind": "manifest", "path": str(path), "allow_http": True, "limits": limits}, tmp_path)
    finally:
        httpd.shutdown()
    assert [x["reason"] for x in q] == ["too_large", "too_large"]
    assert "more than 1000000 bytes" in q[0]["detail"] and "Content-Length 50000000" in q[1]["detail"]
    assert sent["bytes"] < 13_000_000  # the client stopped reading long before the body's end


def test_grounded_backend_with_real_sources_is_a_recipe_error():
    from acd.recipe import RecipeError, load_recipe

    for source in ({"kind": "folder", "root": "/x"}, {"kind": "manifest", "path": "/x/m.jsonl"},
                   {"kind": "hf", "path": "/x/ds"}):
        with pytest.raises(RecipeError, match="'grounded' backend cannot caption"):
            load_recipe("demo", {"source": source})
    openai = {"name": "openai", "endpoints": [{"base_url": "http://127.0.0.1:9/v1"}], "model": "m"}
    from acd.recipe_model import OpenAIBackend

    recipe = load_recipe("demo", {"source": {"kind": "folder", "root": "/x"}, "backend": openai})
    assert recipe.backend == OpenAIBackend.model_validate(openai)


def test_media_parts_written_before_the_frame_cap_columns_still_read(folder_run, tmp_path):
    """Issue 13 added source_duration_s and checked_frames to MEDIA_SCHEMA: a run directory holding ingest
    parts from before (without them) and after reads as one table, the old rows null there."""
    from acd.records import conform
    from acd.runstore import RunStore

    run, media, _ = folder_run
    new = rows_to_table(media, MEDIA_SCHEMA)
    old = new.drop_columns(["source_duration_s", "checked_frames"]).slice(0, 3)
    store = RunStore(tmp_path / "mixed")
    store.write_part("ingest", "old", old)
    store.write_part("ingest", "new", new)
    table = conform(store.sql("select * from {ingest}"), MEDIA_SCHEMA)
    assert table.num_rows == new.num_rows + 3
    by = {}
    for r in table.to_pylist():
        by.setdefault(r["source_id"], []).append(r["checked_frames"])
    assert by["long_noisy.mp4"] == [48] and all(v == [None] or v == [None, None] for k, v in by.items()
                                                  if k not in ("long_noisy.mp4", "sub/long.avi"))
