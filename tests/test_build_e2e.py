"""End to end on the embedded defaults (a reduced demo): every stage, real loaders on the outputs."""
import glob
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import av
import datasets
import pyarrow.parquet as pq
import pytest
import soundfile
import webdataset as wds
from PIL import Image

from acd.checks.length import satisfies
from acd.taxonomy import LengthConstraint, load_taxonomy

SMALL = [
    "--set", "source.counts={image: 16, video: 8, audio: 8}",
    "--set", "pairs={image: 108, video: 156, audio: 60}",
    "--set", "lot_size=32",
]


def _build(out: Path, run: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "acd.cli", "build", "--recipe", "demo", "--out", str(out), "--run-dir", str(run), *SMALL],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"dataset written to {out.resolve()}" in proc.stdout
    return time.perf_counter() - t0


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("e2e")
    first = _build(base / "out-a", base / "run-a")
    again = _build(base / "out-a", base / "run-a")
    _build(base / "out-b", base / "run-b")
    return {"out": base / "out-a", "run": base / "run-a", "twin": base / "out-b", "first_s": first, "rerun_s": again}


def test_pairs_load_with_datasets_and_cover_every_combination(built):
    # own cache: the shared ~/.cache/huggingface can hold another build of a same-named folder
    ds = datasets.load_dataset(str(built["out"]), cache_dir=str(built["out"].parent / "hf-cache"))
    assert set(ds) == {"train", "test"}
    rows = [r for split in ds.values() for r in split]
    combos = {(r["modality"], r["instruction_type"]) for r in rows}
    assert combos == set(load_taxonomy().combinations())
    forms = {r["length_key"].split(":")[0] for r in rows}
    assert forms == set(load_taxonomy().length_forms) | {"none"}
    for r in rows:
        assert satisfies(r["chosen"], LengthConstraint.from_key(r["length_key"])), r["pair_id"]
        if r["is_qcc"]:
            assert r["chosen"] == r["rejected"]
        else:
            assert r["chosen"].strip() != r["rejected"].strip()
        if r["length_constraint"]:
            assert r["length_constraint"] in r["instruction"]


def test_every_shard_reads_and_every_media_file_decodes(built):
    out = built["out"]
    tars = sorted(glob.glob(str(out / "shards" / "*" / "*.tar")))
    assert tars
    n_pairs_in_shards, keys = 0, set()
    for sample in wds.WebDataset(tars, shardshuffle=False, empty_check=False):
        meta = json.loads(sample["json"])
        assert sample["__key__"] not in keys, "media stored twice"
        keys.add(sample["__key__"])
        n_pairs_in_shards += len(meta["pairs"])
        if "jpg" in sample or "png" in sample:
            Image.open(io.BytesIO(sample.get("jpg") or sample["png"])).load()
        elif "mp4" in sample:
            with av.open(io.BytesIO(sample["mp4"])) as c:
                assert sum(1 for _ in c.decode(video=0)) > 0
        else:
            data, sr = soundfile.read(io.BytesIO(sample["wav"]))
            assert sr > 0 and len(data) > 0
    pairs = sum(pq.read_metadata(p).num_rows for p in glob.glob(str(out / "pairs" / "*.parquet")))
    assert n_pairs_in_shards == pairs


def test_acm_export_has_the_release_share_of_qcc_rows(built):
    acm = built["out"] / "acm"
    qac = sum(1 for f in acm.glob("*/q-a-c/*.jsonl") for _ in f.open())
    qcc = sum(1 for f in acm.glob("*/q-c-c/*.jsonl") for _ in f.open())
    assert 0.35 <= qcc / (qac + qcc) <= 0.45
    line = json.loads(next(acm.glob("image/q-a-c/*.jsonl")).open().readline())
    assert line["conversations"][0]["from"] == "human" and line["conversations"][0]["value"].startswith("<image>\n")


def test_rerun_does_no_new_work_and_clean_builds_are_byte_identical(built):
    assert built["rerun_s"] < 0.5 * built["first_s"], built  # the whole process, interpreter start included
    a, b = built["out"], built["twin"]
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.suffix in (".tar", ".parquet"))
    assert files
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert (a / "manifest.json").read_bytes() == (b / "manifest.json").read_bytes()


def test_validate_and_stats_commands(built):
    v = subprocess.run([sys.executable, "-m", "acd.cli", "validate", str(built["out"])], capture_output=True, text=True)
    assert v.returncode == 0 and v.stdout.strip().endswith("valid"), v.stdout[-2000:]
    # A killed tar writer's temp file is not part of the dataset: validate names it.
    debris = built["out"] / "shards" / "train" / ".audio-000000.tar.999999.tmp"
    debris.write_bytes(b"half a tar")
    try:
        v = subprocess.run([sys.executable, "-m", "acd.cli", "validate", str(built["out"])], capture_output=True,
                           text=True)
    finally:
        debris.unlink()
    assert v.returncode != 0 and "shards/train/.audio-000000.tar.999999.tmp: not listed in the manifest" in v.stdout, \
        v.stdout[-2000:]
    s = subprocess.run([sys.executable, "-m", "acd.cli", "stats", str(built["out"]), "--json"], capture_output=True, text=True)
    stats = json.loads(s.stdout)
    assert stats["pairs"] > 0 and len(stats["by_type"]) == 27


def _section(md: str, title: str) -> list[list[str]]:
    """The table rows (cells) under a markdown report heading."""
    part = md.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in part.splitlines() if line.startswith("|")][2:]  # past the header and the rule
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines]


def test_run_report_has_every_section_with_numbers(built):
    import base64
    import re

    from acd.pipeline import Build
    from acd.report import markdown_report

    page = (built["out"] / "report.html").read_text()
    pngs = re.findall(r"alt='(\w+) caption lengths per type' src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert [m for m, _ in pngs] == ["audio", "image", "video"]  # one length plot per modality
    assert all(Image.open(io.BytesIO(base64.b64decode(p))).size[0] >= 600 for _, p in pngs)
    build = Build.from_run_dir(built["run"], built["out"])
    md = markdown_report(build)
    for title in ("Pairs per modality × instruction type", "Check failures", "Quarantine", "Review: lot gate",
                  "Time and throughput per stage"):
        assert f"<h2>{title}</h2>" in page, title
    counts = _section(md, "Pairs per modality × instruction type")
    assert len(counts) == 27 and sum(int(r[2]) for r in counts) == 324
    lots = _section(md, "Review: lot gate")
    n_lots = len(build.store.lots("review_decisions"))
    assert len(lots) == n_lots and all(re.fullmatch(r"\[\d\.\d{3}, \d\.\d{3}\]", r[6]) for r in lots)
    # No person reviewed these lots: their figure is "passed automatic checks", never compliance (issue 21).
    assert all(re.fullmatch(r"\d\.\d{3}", r[4]) and r[5] == "–" for r in lots)
    assert "passed automatic checks, not compliance" in md.split("## Review: lot gate\n", 1)[1].split("\n## ")[0]
    stages = {r[0]: r for r in _section(md, "Time and throughput per stage")}
    assert {"ingest", "plan", "generate", "review", "export"} <= set(stages)
    assert stages["generate"][3] == "324 pairs" and float(stages["generate"][4].replace(",", "")) > 0
    # The fixture built, then reran (a no-op): both runs are listed, the stage table adds them up, and the
    # throughput is over all runs (the rerun's near-zero generate seconds do not make it look fast).
    runs = _section(md, "Runs of this build")
    assert [r[0] for r in runs] == ["1", "2"], runs
    first_generate = float(re.search(r"generate (\d+\.\d)", runs[0][3]).group(1))
    rerun_generate = float(re.search(r"generate (\d+\.\d)", runs[1][3]).group(1))
    # Three figures each rounded to 0.1 s: they can differ by up to 0.15 s (plus float noise).
    assert float(stages["generate"][1]) == pytest.approx(first_generate + rerun_generate, abs=0.151)
    assert float(stages["generate"][5]) == pytest.approx(rerun_generate, abs=0.05)
    # the report prints whole pairs per second: allow its rounding (+0.5) beside the 1% for rounded seconds
    assert float(stages["generate"][4].replace(",", "")) <= 324 / first_generate * 1.01 + 0.5
    assert stages["ingest"][3] == "32 media"
    # The latest run's orchestration share: stage walls less the engine's unit seconds per worker process.
    m = re.search(r"Latest run: (\d+\.\d) s in the stages, of which the engine worked (\d+\.\d) s .* "
                  r"orchestration took (-?\d+\.\d) s", md)
    assert m, md[-800:]
    assert float(m.group(2)) <= float(m.group(1)) and float(m.group(3)) >= 0
