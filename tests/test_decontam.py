"""Text decontamination (issue 25): the n-gram index of evaluation texts (acd.checks.decontam), the
eval_text_overlap check, a real build against a test server that leaks evaluation sentences, and the
"Duplicates and contamination" section of the card, the run report and `acd stats`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from acd.checks.decontam import (EVAL_TEXT_OVERLAP, DecontaminationError, anycapeval_files, anycapeval_texts,
                                 build_index, normalise, read_texts, segments)
from acd.checks.length import split_sentences

ROOT = Path(__file__).resolve().parents[1]
EVAL_DIR = Path("/work/shared/reference/anycap/anycapeval")
needs_eval = pytest.mark.skipif(not EVAL_DIR.is_dir(), reason=f"AnyCapEval texts not at {EVAL_DIR}")

CAPTION = ("A tall giraffe stands in the middle of a dusty enclosure while two zebras graze near a wooden fence "
           "under a pale blue sky.")
LENGTH = "The generated caption's length needs to be 30 to 120 words."


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _index(tmp_path, rows, n=13, name="eval.jsonl"):
    return build_index([(_jsonl(tmp_path / name, rows), "texts")], n)


def test_normalisation_and_ngram_overlap(tmp_path):
    assert normalise("The Giraffe's  NECK,   long!") == ["the", "giraffes", "neck", "long"]
    ix = _index(tmp_path, [{"caption": CAPTION}])
    words = CAPTION.split()
    # 13 consecutive words, differently cased and punctuated: overlap; 12 of them: none.
    assert ix.overlap("Look: " + " ".join(words[3:16]).upper() + "!!! and more words after it.")
    assert not ix.overlap("Look: " + " ".join(words[3:15]) + " and then something else entirely different here.")
    assert ix.first_match("x " + " ".join(words[:13])) == " ".join(normalise(" ".join(words[:13])))
    assert not ix.overlap("") and not ix.overlap(None)


def test_length_sentences_are_cut_and_no_gram_spans_a_cut(tmp_path):
    # Instructions that share only the release's length sentence (and the words around it) do not match.
    ix = _index(tmp_path, [{"q": f"Describe the soap dispenser next to the sinks on the wall. {LENGTH}"}])
    assert not ix.overlap(f"Write about the picture on the wall. {LENGTH.replace('30 to 120', '10 to 20')}")
    # Without the cut those words would form a shared 13-gram ("... on the wall the generated captions length ...").
    assert segments(f"A b c. {LENGTH} D e.") == [["a", "b", "c"], ["d", "e"]]
    long_ix = _index(tmp_path, [{"q": f"{CAPTION} {LENGTH}"}], name="long.jsonl")
    tail = " ".join(CAPTION.split()[-7:])
    assert not long_ix.overlap(f"{tail} {LENGTH} Six more words come right here.")


def test_short_texts_are_one_gram_matched_whole(tmp_path):
    ix = _index(tmp_path, [{"q": f"Describe the location of the soap dispenser. {LENGTH}", "kp": ["mention a man talking"]}])
    assert ix.overlap("describe the LOCATION of the soap dispenser")  # the whole short instruction, copied
    assert ix.overlap(f"{LENGTH} Describe the location of the soap dispenser.")
    assert not ix.overlap("Please describe the location of the soap dispenser.")  # not a part of a longer text
    assert not ix.overlap("In the clip we hear mention a man talking loudly.")


def test_reads_every_string_column_of_parquet_and_nested_json(tmp_path):
    table = pa.table({"id": [1, 2], "text": [CAPTION, None],
                      "turns": [[{"v": "first turn words only"}], [{"v": "Second turn of the conversation here."}]],
                      "tags": [["alpha beta"], []]})
    pq.write_table(table, tmp_path / "e.parquet")
    assert sorted(read_texts(tmp_path / "e.parquet")) == sorted(
        [CAPTION, "first turn words only", "Second turn of the conversation here.", "alpha beta"])
    _jsonl(tmp_path / "e.jsonl", [{"a": {"b": ["x y", 3]}, "c": 1.5}])
    assert list(read_texts(tmp_path / "e.jsonl")) == ["x y"]
    ix = build_index([(tmp_path / "e.parquet", "texts")], 13)
    assert ix.texts == 4 and ix.overlap(CAPTION)


def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(DecontaminationError, match="not a file"):
        build_index([(tmp_path / "missing.jsonl", "texts")], 13)
    (tmp_path / "e.csv").write_text("a,b\n")
    with pytest.raises(DecontaminationError, match="unknown format"):
        build_index([(tmp_path / "e.csv", "texts")], 13)
    (tmp_path / "bad.jsonl").write_text('{"a": "ok"}\n{not json\n')
    with pytest.raises(DecontaminationError, match=r"bad.jsonl:2: not JSON"):
        build_index([(tmp_path / "bad.jsonl", "texts")], 13)
    with pytest.raises(DecontaminationError, match="no AnyCapEval files"):
        anycapeval_files(tmp_path)


def test_index_cached_by_file_digest_and_hashes_stable_across_processes(tmp_path):
    a = _index(tmp_path, [{"c": CAPTION}])
    assert _index(tmp_path, [{"c": CAPTION}]) is a  # same bytes, same n: the process's one index
    assert _index(tmp_path, [{"c": CAPTION + " More."}]) is not a
    assert build_index([(tmp_path / "eval.jsonl", "texts")], 8) is not a
    code = ("from acd.checks.decontam import text_grams; import sys; "
            f"print(sorted(text_grams({CAPTION!r}, 13)))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env=dict(os.environ, PYTHONPATH=str(ROOT), PYTHONHASHSEED="123")).stdout
    from acd.checks.decontam import text_grams

    assert json.loads(other) == sorted(text_grams(CAPTION, 13))  # string hashing is salted; these are not


@needs_eval
def test_anycapeval_profile_reads_instructions_captions_and_key_points():
    files = anycapeval_files(EVAL_DIR)
    assert [f.relative_to(EVAL_DIR).as_posix() for f in files] == [
        f"{m}/ref_{k}.jsonl" for m in ("audio", "image", "video") for k in ("content", "style")]
    assert anycapeval_files(EVAL_DIR.parent) == files  # the release folder or its anycapeval/ folder
    ix = build_index([(f, "anycapeval") for f in files], 13)
    first = json.loads(files[2].read_text().splitlines()[0])  # image/ref_content.jsonl
    assert ix.overlap(first["conversations"][1]["value"]) and ix.overlap(first["conversations"][0]["value"])
    assert ix.overlap(first["key_point"][0])
    assert not ix.overlap(first["image"])  # a file name is not an evaluation text
    assert 1000 < ix.texts < 2000


def test_check_pair_and_check_lot_report_eval_text_overlap(tmp_path):
    from acd.checks.lot import check_lot
    from acd.checks.rules import check_pair

    ix = _index(tmp_path, [{"c": CAPTION}])
    clean = "It is calm and quiet today, and everything looks simple and clear overall."
    args = ("Describe the image.", clean, clean, True, "none", None)
    assert EVAL_TEXT_OVERLAP not in check_pair(*args, decontam=ix)
    assert EVAL_TEXT_OVERLAP in check_pair("Describe the image.", f"{clean} {CAPTION}", "It is plain.", False,
                                           "none", None, decontam=ix)
    assert EVAL_TEXT_OVERLAP in check_pair(f"Describe it. {CAPTION}", clean, clean, True, decontam=ix)
    assert check_pair(*args) == check_pair(*args, decontam=None)
    rows = [dict(pair_id=f"p{i}", media_key=f"m{i}", instruction_type="brief", length_key="none", is_qcc=False,
                 instruction="Describe the image.", chosen=clean, rejected=r)
            for i, r in enumerate(["It is plain and simple.", f"It is plain. {CAPTION}"])]
    out = check_lot(pa.Table.from_pylist(rows), {"judge": "none", "content": []}, decontam=ix).to_pylist()
    assert [EVAL_TEXT_OVERLAP in r["check_failures"] for r in out] == [False, True]
    assert out[1]["check_passed"] is False
    plain = check_lot(pa.Table.from_pylist(rows), {"judge": "none", "content": []}).to_pylist()
    assert not any(EVAL_TEXT_OVERLAP in r["check_failures"] for r in plain)


def test_gate_drops_overlapping_pairs_without_counting_them():
    from test_review_stats import CFG, make_pairs

    from acd.review.gate import review_lot

    overlap = lambda i: [EVAL_TEXT_OVERLAP] if i < 10 else []  # noqa: E731
    _, decision = review_lot(make_pairs(100, passed=lambda i: i >= 10, failures=overlap), CFG, seed=1)
    assert decision["decision"] == "accepted", decision  # 90 of 90 counted pairs passed
    assert "10 pairs overlapping evaluation texts dropped" in decision["note"]
    also_bad = lambda i: overlap(i) + (["grammar_chosen"] if i < 5 else [])  # noqa: E731  non-compliant too: counted
    _, decision = review_lot(make_pairs(100, passed=lambda i: i >= 10, failures=also_bad), CFG, seed=1)
    assert "5 pairs overlapping" in decision["note"] and decision["decision"] == "rejected"


# --- a real build against a model server that leaks evaluation sentences ------------------------------------

LEAK_RATE = 0.05


@needs_eval
@pytest.mark.timeout(300)
def test_leaking_server_build_exports_no_overlap_and_reports_it(tmp_path):
    from acd.pipeline import Build, run_build
    from acd.report import markdown_report
    from acd.records import QUARANTINE_SCHEMA
    from acd.runstore import RunStore
    from acd.testing.openai_server import OpenAITestServer
    from test_generation_build import _overrides

    # Sentences of AnyCapEval's reference captions long enough to hold a 13-gram.
    sentences = sorted({s for f in anycapeval_files(EVAL_DIR) for t in anycapeval_texts(f) for s in split_sentences(t)
                        if len(s.split()) >= 16 and "length" not in s})[:200]
    run, out = tmp_path / "run", tmp_path / "out"
    with OpenAITestServer(median=0.003, sigma=0.3, slots=64, seed=5,
                          leak={"sentences": sentences, "rate": LEAK_RATE}) as srv:
        ov = _overrides(srv)
        ov["pairs"] = {"image": 90, "video": 0, "audio": 45}
        ov["checks"]["max_attempts"] = 3
        ov["backend"]["cache_dir"] = str(tmp_path / "cache")
        ov["decontaminate"] = {"profile": "anycapeval", "release_dir": str(EVAL_DIR)}
        run_build("demo", out, run_dir=run, overrides=ov)
        stats = srv.stats()
    leaked = stats["leaked"]
    assert 0.02 < leaked / stats["requests"] < 0.1, stats  # about LEAK_RATE of the replies carried one

    rows = pq.read_table(str(run / "generate")).to_pylist()
    carrying = [r for r in rows if any(s in (r[k] or "") for s in sentences for k in ("instruction", "chosen", "rejected"))]
    flagged = [r for r in rows if EVAL_TEXT_OVERLAP in r["check_failures"]]
    assert {r["pair_id"] for r in carrying} == {r["pair_id"] for r in flagged}  # every leaking pair, only those
    assert not any(r["check_passed"] for r in flagged)
    assert leaked > len(flagged), "no leaking pair healed on a new attempt"

    exported = pq.read_table(str(out / "pairs")).to_pylist()
    assert exported
    fresh = build_index([(f, "texts") for f in anycapeval_files(EVAL_DIR)], 13)  # every string of the files
    assert not [p["pair_id"] for p in exported for k in ("instruction", "chosen", "rejected") if fresh.overlap(p[k])]
    assert not {p["pair_id"] for p in exported} & {r["pair_id"] for r in flagged}

    card = (out / "README.md").read_text()
    assert "## Duplicates and contamination" in card
    assert f"| {EVAL_TEXT_OVERLAP} | pairs whose final attempt shared" in card
    assert f"| {len(flagged)} |" in card.split("## Duplicates and contamination")[1].split("\n## ")[0]

    # The other helper's media rows (stage dedup), as ingest would write them: the section counts them.
    RunStore(run).write_part("quarantine", "dedup-test", pa.Table.from_pylist([
        dict(source="synthetic", source_id="img-7", stage="dedup", reason="duplicate", detail="same as img-3"),
        dict(source="synthetic", source_id="img-9", stage="dedup", reason="duplicate", detail="same as img-3"),
        dict(source="synthetic", source_id="aud-1", stage="dedup", reason="eval_overlap", detail="matches eval x.wav"),
    ], schema=QUARANTINE_SCHEMA))
    report = markdown_report(Build.from_run_dir(run, out))
    section = report.split("## Duplicates and contamination")[1].split("\n## ")[0]
    assert "| duplicate | media quarantined as a duplicate of a kept item (dedup.media: near) | 2 |" in section
    assert "| eval_overlap | media quarantined as matching an evaluation set's media | 1 |" in section
    assert "| duplicate | synthetic:img-7 | same as img-3 |" in section
    assert "n-gram length 13" in section and "AnyCapEval" in section
    if flagged:
        assert f"| {EVAL_TEXT_OVERLAP} | {sorted(r['pair_id'] for r in flagged)[0]} |" in section
    cli = subprocess.run([sys.executable, "-m", "acd.cli", "stats", str(out), "--run-dir", str(run)],
                         capture_output=True, text=True, check=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert section.strip() in cli.stdout
