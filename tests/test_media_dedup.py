"""Issue 25 (media): near duplicates and evaluation overlap, quarantined by the dedup stage of `acd build`.

The corpus (tests/dedup_corpus.py) has 60 distinct pictures and 30 distinct clips, copies of 3 originals per
transform (pictures: 0.5x, JPEG q50, a 4% crop, +10% brightness; clips: resampled, FLAC, 30 dB SNR noise,
a 50 ms trim) and an evaluation folder with transformed copies of 8 other originals. The build runs the
product path (`acd build`, folder source, the local OpenAI-compatible test server); these tests read its
quarantine rows. The thresholds in schemas/ingest.yaml `dedup:` are the ones calibrated here: the measured
distances are printed (copies vs originals, and the closest distinct pair)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from acd import dedup
from acd.media.fingerprint import audio_fingerprint, image_phash, phash, video_phashes
from acd.media.limits import load_limits
from acd.paths import RECIPES_DIR
from acd.runstore import MEDIA_INDEX, RunStore
from acd.testing.openai_server import OpenAITestServer
from dedup_corpus import (AUDIO_TRANSFORMS, IMAGE_TRANSFORMS, build_dedup_corpus, picture, png, sound,
                          transform_audio, transform_image, wav)

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dedup")
    corpus = build_dedup_corpus(tmp / "corpus")
    recipe = yaml.safe_load((RECIPES_DIR / "demo.yaml").read_text())
    with OpenAITestServer(median=0.002) as srv:
        recipe.update(
            name="dedup", pairs={"image": 6, "video": 0, "audio": 4}, lot_size=32,
            # batch_size 40: originals and their copies land in different batches (matched across parts).
            source={"kind": "folder", "root": str(corpus.source), "batch_size": 40},
            decontaminate={"media": [{"kind": "folder", "root": str(corpus.eval)}]},
            backend={"name": "openai", "endpoints": [{"base_url": srv.base_url, "max_in_flight": 16}],
                     "model": "test-model", "params": {"max_tokens": 128}, "cache_dir": str(tmp / "cache")},
            checks={**recipe["checks"], "judge": "none"},
        )
        path = tmp / "dedup.yaml"
        path.write_text(yaml.safe_dump(recipe))
        run = tmp / "run"
        proc = subprocess.run([sys.executable, "-m", "acd.cli", "build", "--recipe", str(path), "--out",
                               str(tmp / "out"), "--run-dir", str(run)], capture_output=True, text=True,
                              timeout=500, env={**os.environ, "ACD_WORKERS": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    store = RunStore(run)
    return corpus, store, proc


def _quarantine(store):
    return {q["source_id"]: q for q in store.sql("select * from {quarantine}").to_pylist()}


def _keys(store):
    return {m["source_id"]: m["media_key"] for m in store.sql("select * from {ingest}").to_pylist()}


def test_every_planted_copy_is_a_duplicate_of_its_original(built):
    corpus, store, _ = built
    q, keys = _quarantine(store), _keys(store)
    found: dict[str, int] = {}
    for copy, (kind, orig) in corpus.copies.items():
        row = q.get(copy)
        assert row is not None, f"{kind} copy {copy} of {orig} was not quarantined"
        assert row["reason"] == "duplicate", row
        assert orig in row["detail"] and keys[orig] in row["detail"], row  # names the kept item and key
        found[kind] = found.get(kind, 0) + 1
    print("\ndetected per transform:", found)
    assert found == {k: 3 for k in IMAGE_TRANSFORMS + AUDIO_TRANSFORMS}
    # Found across batches by the dedup stage (batch_size 40 puts every copy in a later batch than its original).
    assert all(q[c]["stage"] == "dedup" for c in corpus.copies)
    copy, orig = corpus.byte_copy
    assert q[copy]["reason"] == "duplicate" and q[copy]["stage"] == "dedup"
    assert q[copy]["detail"] == f"same bytes as {orig}, kept media_key {keys[orig]}"


def test_evaluation_copies_quarantine_their_originals_as_eval_overlap(built):
    corpus, store, _ = built
    q = _quarantine(store)
    for orig, (kind, name) in corpus.evals.items():
        row = q.get(orig)
        assert row is not None and row["reason"] == "eval_overlap", (orig, kind, row)
        assert name in row["detail"] and "decontaminate.media[0]" in row["detail"], row
    assert sum(r["reason"] == "eval_overlap" for r in q.values()) == len(corpus.evals) == 8


def test_no_distinct_item_is_quarantined_and_planning_leaves_the_copies_out(built):
    corpus, store, _ = built
    q, keys = _quarantine(store), _keys(store)
    planted = set(corpus.copies) | set(corpus.evals) | {corpus.byte_copy[0]}
    false = sorted(set(q) - planted)
    print(f"\nfalse quarantines: {len(false)} {false}")
    assert len(false) <= 1, [q[f] for f in false]
    assert len(keys) == len(corpus.originals) + len(corpus.copies) + 1  # every input ingested; dedup only marks
    index = set(store.read_part(*MEDIA_INDEX).column("media_key").to_pylist())
    kept = {keys[o] for o in corpus.originals if o not in corpus.evals}
    assert index == kept  # plan's media: every distinct original but the evaluation ones, no copy
    planned = set(store.sql("select distinct media_key from {plan}").column("media_key").to_pylist())
    assert planned <= kept


def test_a_rerun_keeps_the_decisions(built, tmp_path):
    """The stage's part is its done-marker: rerunning the stage leaves it; recomputing from the same hashes
    (a fresh decision on the same parts) gives the same rows."""
    corpus, store, _ = built
    from acd.pipeline import Build
    from acd.stages.dedup import run_dedup

    before = store.read_part("dedup", "all")
    build = Build.from_run_dir(store.root, None)
    assert run_dedup(build)["skipped"] == 1
    (store.root / "dedup" / "all" / "part-0.parquet").unlink()
    assert "skipped" not in run_dedup(build)
    assert store.read_part("dedup", "all").equals(before)


# --- the parts, measured -------------------------------------------------------------------------------------

def _ham(a: int, b: int) -> int:
    return bin((a ^ b) & (2 ** 64 - 1)).count("1")


def test_thresholds_separate_copies_from_distinct_items():
    """The calibration behind schemas/ingest.yaml dedup: copies' distances under the thresholds, the closest
    distinct pair above them, on the stored (ingest-normalised) media."""
    from acd.media.audio import probe_audio
    from acd.media.image import probe_image

    limits = load_limits()
    cfg = limits.dedup
    pics = [picture(i) for i in range(60)]
    hashes = [image_phash(probe_image(png(p), limits).data)
              for p in pics]
    distinct = min(_ham(hashes[i], hashes[j]) for i in range(60) for j in range(i + 1, 60))
    copies = {k: max(_ham(hashes[i], image_phash(probe_image(transform_image(pics[i], k)[0], limits).data))
                     for i in range(60)) for k in IMAGE_TRANSFORMS}
    print(f"\nimage pHash: copies max {copies}, closest distinct {distinct}, threshold {cfg.image_max_distance}")
    assert max(copies.values()) <= cfg.image_max_distance < distinct

    clips = [sound(i) for i in range(30)]
    fps = [np.asarray(audio_fingerprint(probe_audio(wav(x), limits).data), np.uint32) for x in clips]
    ber = lambda a, b: dedup.fingerprint_ber(a, b, cfg.audio_max_offset, cfg.audio_min_items)  # noqa: E731
    distinct_ber = min(ber(fps[i], fps[j]) for i in range(30) for j in range(i + 1, 30))
    copies_ber = {k: round(max(ber(fps[i], np.asarray(audio_fingerprint(probe_audio(
        transform_audio(clips[i], k, seed=i)[0], limits).data), np.uint32)) for i in range(30)), 4)
        for k in AUDIO_TRANSFORMS}
    print(f"audio BER: copies max {copies_ber}, closest distinct {distinct_ber:.3f}, threshold {cfg.audio_max_ber}")
    assert max(copies_ber.values()) <= cfg.audio_max_ber < distinct_ber


def test_in_process_fingerprint_is_fpcalcs(tmp_path):
    """The fingerprint computed through libchromaprint equals `fpcalc -raw` (Chromaprint's own tool) on the
    same stored audio."""
    from acd.media.audio import probe_audio

    data = probe_audio(wav(sound(3)), load_limits()).data
    path = tmp_path / "clip.wav"
    path.write_bytes(data)
    # fpcalc 1.5.1 with FFmpeg 5 exits 3 after printing ("Error decoding audio frame (End of file)" at the
    # end of every file): its output is complete, so the exit status is not checked.
    out = subprocess.run(["fpcalc", "-raw", "-json", str(path)], capture_output=True, text=True)
    theirs = json.loads(out.stdout)["fingerprint"]
    ours = audio_fingerprint(data)
    assert len(ours) > 20 and len(set(ours)) > 10  # a varied clip, not one repeated item
    assert ours == theirs


def test_multi_index_search_finds_exactly_the_brute_force_pairs():
    rng = np.random.default_rng(7)
    base = rng.integers(0, 2 ** 63, 3000, dtype=np.int64).view(np.uint64)
    flips = [np.uint64(sum(1 << int(b) for b in rng.choice(64, k, replace=False))) for k in rng.integers(0, 14, 400)]
    near = base[:400] ^ np.asarray(flips, np.uint64)
    hashes = np.concatenate([base, near])
    for t in (3, 7, 10, 11):
        a, b, d = dedup.hamming_pairs(hashes, t)
        got = set(zip(a.tolist(), b.tolist()))
        dist = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
        want = {(i, j) for i, j in zip(*np.nonzero(np.triu(dist <= t, 1)))}
        assert got == want and len(want) > 50, t


def test_video_copies_match_and_other_videos_do_not():
    """A clip re-encoded at half size matches itself (mean aligned-frame distance), another clip does not."""
    import io
    from fractions import Fraction

    import av

    def clip(seed: int, scale: float = 1.0) -> bytes:
        pics = [picture(seed * 10 + k) for k in range(3)]
        w, h = int(192 * scale) // 2 * 2, int(144 * scale) // 2 * 2
        buf = io.BytesIO()
        with av.open(buf, mode="w", format="mp4") as c:
            vs = c.add_stream("libx264", rate=12)
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
            for i in range(36):
                f = av.VideoFrame.from_image(pics[i // 12].resize((w, h)))
                f.pts, f.time_base = i, Fraction(1, 12)
                c.mux(vs.encode(f))
            c.mux(vs.encode(None))
        return buf.getvalue()

    limits = load_limits()
    cfg = limits.dedup
    frames = [video_phashes(clip(s, sc), cfg.video_frames, limits) for s, sc in ((1, 1.0), (1, 0.5), (2, 1.0), (3, 1.0))]
    pairs = dedup.video_pairs(frames, cfg)
    assert [(a, b) for a, b, _ in pairs] == [(0, 1)], pairs


def test_synthetic_items_are_matched_by_bytes_only():
    """Procedural scenes share a vocabulary and come within the near thresholds without being copies: the
    synthetic source is deduplicated by bytes (the demo quarantines none of its items)."""
    from acd.recipe import load_recipe
    from acd.sources.factory import make_source

    recipe = load_recipe("demo")
    src = make_source(recipe.source, recipe.seed)
    assert recipe.dedup.media == "near"
    assert dedup.near_mode(recipe, src) == "exact" and not dedup.perceptual(recipe, src)
    folder = make_source({"kind": "folder", "root": str(Path(__file__).parent)}, 0)
    assert dedup.near_mode(recipe, folder) == "near" and dedup.perceptual(recipe, folder)


def test_phash_is_stable_for_an_image_object_and_its_bytes():
    im = picture(5)
    assert phash(im) == image_phash(png(im))
