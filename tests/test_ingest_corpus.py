"""Issue 13: the whole bad-and-good corpus through `acd build` (the product path), as a folder and as a JSONL
manifest: no crash, every input exactly one media or quarantine row with its expected reason, peak RSS
bounded with the audio bomb in it, each build within a time bound. Real media need a model backend, so the
builds talk to the local OpenAI-compatible test server."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from acd.paths import RECIPES_DIR
from acd.runstore import RunStore
from acd.testing.openai_server import OpenAITestServer
from corpus import TEST_LIMITS, build_corpus, write_manifest_jsonl

BUILD_BOUND_S = 300  # 2 shared cores; a build here takes well under a minute
RSS_BOUND_MB = 1500  # the audio bomb alone decoded to 2+ GB before the decoded-size cap

# Runs `acd build` as a child and reports the peak RSS of every process under it (the ingest pool included:
# RUSAGE_CHILDREN is the largest reaped descendant), so the number is the build's, not this test's.
MEASURE = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.run(sys.argv[1:]).returncode\n"
    "print('peak_rss_kb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(rc)\n"
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def server():
    with OpenAITestServer(median=0.002) as srv:
        yield srv


def acd_build(tmp: Path, source: dict, server) -> tuple[subprocess.CompletedProcess, float, float, Path]:
    recipe = yaml.safe_load((RECIPES_DIR / "demo.yaml").read_text())
    recipe.update(
        name="corpus", source=source, pairs={"image": 9, "video": 6, "audio": 5}, lot_size=32,
        backend={"name": "openai", "endpoints": [{"base_url": server.base_url, "max_in_flight": 16}],
                 "model": "test-model", "params": {"max_tokens": 128}, "cache_dir": str(tmp / "cache")},
        checks={**recipe["checks"], "judge": "none"},
    )
    path = tmp / "corpus.yaml"
    path.write_text(yaml.safe_dump(recipe))
    acd = Path(sys.executable).with_name("acd")
    run_dir = tmp / "run"
    t = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", MEASURE, str(acd), "build", "--recipe", str(path),
                           "--out", str(tmp / "out"), "--run-dir", str(run_dir)],
                          capture_output=True, text=True, timeout=2 * BUILD_BOUND_S,
                          env={**os.environ, "ACD_WORKERS": "2"})
    seconds = time.monotonic() - t
    rss = [int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("peak_rss_kb")]
    return proc, seconds, (rss[0] / 1024 if rss else float("inf")), run_dir


def outcomes(run_dir: Path) -> tuple[list[dict], list[dict]]:
    store = RunStore(run_dir)
    media = store.sql("select * from {ingest} order by source_id").to_pylist()
    quarantine = store.sql("select * from {quarantine} order by source_id").to_pylist()
    return media, quarantine


def check_build(proc, seconds, rss_mb):
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert seconds < BUILD_BOUND_S, f"build took {seconds:.0f}s"
    assert rss_mb < RSS_BOUND_MB, f"peak RSS {rss_mb:.0f} MB"


def test_folder_corpus_through_acd_build(corpus, server, tmp_path):
    proc, seconds, rss_mb, run_dir = acd_build(
        tmp_path, {"kind": "folder", "root": str(corpus.root), "limits": TEST_LIMITS}, server)
    check_build(proc, seconds, rss_mb)
    media, quarantine = outcomes(run_dir)
    ids = [m["source_id"] for m in media] + [q["source_id"] for q in quarantine]
    assert len(ids) == len(set(ids))  # exactly one row per input
    got = {m["source_id"]: "ok" for m in media} | {q["source_id"]: q["reason"] for q in quarantine}
    assert got == corpus.expected
    assert all(q["detail"] for q in quarantine)
    by = {m["source_id"]: m for m in media}
    for sid, facts in corpus.facts.items():  # cut / unchecked past the frame cap: on the row
        for k, v in facts.items():
            assert by[sid][k] == (pytest.approx(v) if isinstance(v, float) else v), (sid, k)
    assert all(by[s]["checked_frames"] is None for s in by if s not in corpus.facts)
    assert {by[s]["ext"] for s in ("scan.bmp", "sub/scan.tiff", "sub/scan16.tif")} == {"png"}
    # Every stored video renders into a model request, the one with noise past the checked frames included
    # (the renderer used to decode every frame: a crash there, gigabytes on a long video).
    from acd.prompts import media_parts

    for m in media:
        if m["modality"] == "video":
            parts = media_parts({**m, "path": str(run_dir / m["uri"])}, frames=6)
            assert len(parts) == 6 and all(p["image_url"]["url"].startswith("data:image/jpeg") for p in parts)
    print(f"\nfolder corpus: {len(ids)} inputs, {seconds:.1f}s, peak RSS {rss_mb:.0f} MB")


def test_manifest_corpus_through_acd_build(corpus, server, tmp_path):
    mpath, expected = write_manifest_jsonl(corpus, "build.jsonl")
    proc, seconds, rss_mb, run_dir = acd_build(
        tmp_path, {"kind": "manifest", "path": str(mpath), "limits": TEST_LIMITS}, server)
    check_build(proc, seconds, rss_mb)
    media, quarantine = outcomes(run_dir)
    row = lambda sid: int(sid.split(":")[1])  # noqa: E731  "build.jsonl:<row>[:<path>]"
    rows = [row(m["source_id"]) for m in media] + [row(q["source_id"]) for q in quarantine]
    assert len(rows) == len(set(rows))
    got = {row(m["source_id"]): "ok" for m in media} | {row(q["source_id"]): q["reason"] for q in quarantine}
    assert got == expected
    print(f"\nmanifest corpus: {len(rows)} rows, {seconds:.1f}s, peak RSS {rss_mb:.0f} MB")


def test_real_media_on_the_grounded_backend_is_refused_up_front(corpus, tmp_path):
    recipe = yaml.safe_load((RECIPES_DIR / "demo.yaml").read_text())
    recipe["source"] = {"kind": "folder", "root": str(corpus.root)}
    path = tmp_path / "grounded.yaml"
    path.write_text(yaml.safe_dump(recipe))
    acd = Path(sys.executable).with_name("acd")
    proc = subprocess.run([str(acd), "build", "--recipe", str(path), "--out", str(tmp_path / "out"),
                           "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "'grounded' backend" in lines[0] and "name: openai" in lines[0] and "base_url" in lines[0]
    assert not (tmp_path / "run" / "ingest").exists()  # refused before any work
