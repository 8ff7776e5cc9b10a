"""`acd check` (issue 21, point 6): the build's per-pair checks over a JSONL or Parquet file, a built dataset
directory, or InternVL conversation files (the official AnyCap slice, a dataset's acm/ export).

The pairs are real demo pairs (`make demo` on main 425cb1c): PASS passes every check; FAIL is the one pair
that demo's checks flagged (`length_chosen`: 9 words where exactly 10 are asked for).
"""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from acd.checks.conversations import split_human_turn
from acd.checks.rules import check_pair
from acd.checks.table import check_rows, read_pairs, summarize
from acd.cli import main
from acd.paths import REFERENCE_DIR

TEN_WORDS = "The generated caption's length needs to be exactly 10 words."
PASS = {"pair_id": "0604c16ce8215f0d4a94ccd4", "modality": "audio", "instruction_type": "brief",
        "instruction": f"Use a brief sentence to describe the content of this audio. {TEN_WORDS}",
        "chosen": "The clip holds a chirp, an engine, and a horn.",
        "rejected": "A strong, low chirp plays over a soft, rain-like hiss."}
FAIL = {"pair_id": "a0501b0a5133d2f01176f1f5", "modality": "video", "instruction_type": "event",
        "instruction": f"{TEN_WORDS} Describe the sequence of actions and interactions involving the kite, the umbrella, "
                       "and the flower in this video.",
        "chosen": "The kite, the umbrella, and the flower appear first.",
        "rejected": "The kite, the umbrella, and the flower appear first. A silver bicycle is present in the center."}
# The PASS pair's media, as the demo's ingest parts hold it, and another demo clip (one engine, nothing else).
GROUNDING = ('{"duration_s":4.0,"events":[{"sounds":["s1"],"t":0.11,"type":"start"},{"sounds":["s1"],"t":0.49,"type":"stop"},'
             '{"sounds":["s2"],"t":0.83,"type":"start"},{"sounds":["s2"],"t":2.03,"type":"stop"},{"sounds":["s3"],"t":2.27,'
             '"type":"start"},{"sounds":["s3"],"t":2.72,"type":"stop"}],"kind":"audio","sample_rate":16000,"scene":'
             '{"background":"rain-like noise","mood":"busy"},"sounds":[{"category":"animal","end":0.49,"id":"s1","loudness":'
             '"soft","pattern":"three chirps","pitch":"low","source":"chirp","start":0.11},{"category":"mechanical","end":2.03,'
             '"id":"s2","loudness":"loud","pattern":"a steady rumble","pitch":"low","source":"engine","start":0.83},'
             '{"category":"tonal","end":2.72,"id":"s3","loudness":"soft","pattern":"one honk","pitch":"high","source":"horn",'
             '"start":2.27}]}')
OTHER_GROUNDING = ('{"duration_s":2.0,"events":[{"sounds":["s1"],"t":0.15,"type":"start"},{"sounds":["s1"],"t":1.35,'
                   '"type":"stop"}],"kind":"audio","sample_rate":16000,"scene":{"background":"wind","mood":"busy"},'
                   '"sounds":[{"category":"mechanical","end":1.35,"id":"s1","loudness":"soft","pattern":"a steady rumble",'
                   '"pitch":"low","source":"engine","start":0.15}]}')


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _run(capsys, *argv) -> tuple[int, str, str]:
    rc = main(["check", *map(str, argv)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _result(path: Path) -> dict[str, dict]:
    if path.suffix == ".parquet":
        rows = pq.read_table(path).to_pylist()
    else:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {r["pair_id"]: r for r in rows}


def test_the_real_pairs_are_what_this_file_says():
    """Preconditions, asked of check_pair itself (the checks change under other work: this names the cause)."""
    assert check_pair(PASS["instruction"], PASS["chosen"], PASS["rejected"], False, "word_exact:10", TEN_WORDS,
                      modality="audio", grounding=GROUNDING, instruction_type="brief") == []
    assert "length_chosen" in check_pair(FAIL["instruction"], FAIL["chosen"], FAIL["rejected"], False,
                                         "word_exact:10", TEN_WORDS, modality="video", instruction_type="event")


def test_jsonl_length_read_from_the_instruction_and_summary(tmp_path, capsys):
    # No length_constraint column: the release's length sentence inside the instruction is the constraint.
    same = dict(PASS, pair_id="same", rejected=PASS["chosen"])  # a q-a-c pair whose rejected is its chosen
    qcc = dict(PASS, pair_id="qcc", rejected=PASS["chosen"], is_qcc=True)  # the same texts are right for q-c-c
    src = _jsonl(tmp_path / "pairs.jsonl", [PASS, FAIL, same, qcc])
    rc, out, err = _run(capsys, src, "--out", tmp_path / "result.jsonl")
    assert rc == 0, err
    res = _result(tmp_path / "result.jsonl")
    assert res[PASS["pair_id"]] == {"pair_id": PASS["pair_id"], "passed": True, "failures": []}
    assert res[FAIL["pair_id"]]["passed"] is False and "length_chosen" in res[FAIL["pair_id"]]["failures"]
    assert res["same"]["failures"] == ["chosen_equals_rejected"] and res["qcc"]["passed"] is True
    assert "pairs: 4" in out and "passed: 2 (50.0%)" in out
    assert any(line.startswith("length_chosen") and line.endswith("1  25.0%") for line in out.splitlines()), out
    # With the column present and empty, the pair has no constraint: the same caption passes its length.
    no_len = dict(FAIL, length_constraint=None)
    _jsonl(src, [no_len])
    assert _run(capsys, src, "--out", tmp_path / "r2.jsonl")[0] == 0
    assert "length_chosen" not in _result(tmp_path / "r2.jsonl")[FAIL["pair_id"]]["failures"]


def test_grounding_column_json_object_or_string(tmp_path, capsys):
    """A grounding given (as the ingest parts' JSON string, or as a JSON object) reaches the fact check: the
    PASS caption names a chirp and a horn, which another demo clip (one engine) does not have."""
    rows = [dict(PASS, pair_id="own", grounding=json.loads(GROUNDING)),
            dict(PASS, pair_id="other-str", grounding=OTHER_GROUNDING),
            dict(PASS, pair_id="other-obj", grounding=json.loads(OTHER_GROUNDING))]
    src = _jsonl(tmp_path / "g.jsonl", rows)
    assert _run(capsys, src, "--out", tmp_path / "g.out.jsonl")[0] == 0
    res = _result(tmp_path / "g.out.jsonl")
    assert res["own"]["failures"] == []
    assert "fact_chosen" in res["other-str"]["failures"] and res["other-obj"]["failures"] == res["other-str"]["failures"]


def test_parquet_in_and_out_agree_with_jsonl(tmp_path, capsys):
    rows = [dict(PASS, is_qcc=False, length_constraint=TEN_WORDS, rejection_strategy="weak_model"),
            dict(FAIL, is_qcc=False, length_constraint=TEN_WORDS, rejection_strategy="weak_model")]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "pairs.parquet")
    _jsonl(tmp_path / "pairs.jsonl", rows)
    assert _run(capsys, tmp_path / "pairs.parquet", "--out", tmp_path / "a.parquet")[0] == 0
    assert _run(capsys, tmp_path / "pairs.jsonl", "--out", tmp_path / "b.jsonl")[0] == 0
    out = pq.read_table(tmp_path / "a.parquet")
    assert out.schema.names == ["pair_id", "passed", "failures"] and out.schema.field("passed").type == pa.bool_()
    assert _result(tmp_path / "a.parquet") == _result(tmp_path / "b.jsonl")


def test_fail_under_exit_codes(tmp_path, capsys):
    src = _jsonl(tmp_path / "pairs.jsonl", [PASS, FAIL])  # pass rate 0.5
    assert _run(capsys, src, "--out", tmp_path / "r.jsonl", "--fail-under", "0.5")[0] == 0
    rc, _, err = _run(capsys, src, "--out", tmp_path / "r.jsonl", "--fail-under", "0.6")
    assert rc == 1 and "pass rate 0.500 is below --fail-under 0.6" in err
    # the real entry point, as a shell sees it
    p = subprocess.run([sys.executable, "-m", "acd.cli", "check", str(src), "--out", str(tmp_path / "r.parquet"),
                        "--fail-under", "0.9"], capture_output=True, text=True)
    assert p.returncode == 1 and "passed: 1 (50.0%)" in p.stdout


@pytest.mark.parametrize("name,content,expected", [
    ("missing.jsonl", None, "no such file or directory"),
    ("nocol.jsonl", [{k: v for k, v in PASS.items() if k != "rejected"}], "missing required column(s) rejected"),
    ("broken.jsonl", "line2", "line 2 is not valid JSON"),
    ("list.jsonl", "list", "line 1 is a JSON list, not an object"),
    ("badbool.jsonl", [dict(PASS, is_qcc="maybe")], "column 'is_qcc' is 'maybe', not true/false"),
    ("noid.jsonl", [dict(PASS, pair_id=None)], "row 1 has no pair_id"),
    ("garbage.parquet", b"not parquet at all", "not readable Parquet"),
    ("pairs.csv", b"a,b\n", "expected .jsonl or .parquet"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, name, content, expected):
    path = tmp_path / name
    if isinstance(content, list):
        _jsonl(path, content)
    elif content == "line2":
        path.write_text(json.dumps(PASS) + "\n{\"pair_id\": broken\n")
    elif content == "list":
        path.write_text("[1, 2]\n")
    elif isinstance(content, bytes):
        path.write_bytes(content)
    rc, out, err = _run(capsys, path, "--out", tmp_path / "r.jsonl")
    assert rc == 2 and expected in err, err
    assert err.startswith("acd check: error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "r.jsonl").exists()


def test_fail_under_out_of_range_is_bad_input(tmp_path, capsys):
    src = _jsonl(tmp_path / "pairs.jsonl", [PASS])
    rc, _, err = _run(capsys, src, "--out", tmp_path / "r.jsonl", "--fail-under", "95")
    assert rc == 2 and "between 0 and 1" in err


# ------------------------------------------------------------------------------------- a built dataset
def _wav() -> bytes:
    import numpy as np
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, 0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000.0), 8000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A real export (acd.export.write_outputs) of four audio pairs on one clip: pairs/*.parquet, acm/, a card;
    plus an ingest part holding the clip's grounding, as a run directory has it."""
    from acd.export import write_outputs
    from acd.records import MEDIA_SCHEMA, PAIR_SCHEMA, rows_to_table
    from acd.sources.base import store_media

    root = tmp_path_factory.mktemp("check-ds")
    run = root / "run"
    data = _wav()
    key, uri = store_media(data, "wav", run / "media")
    media = [{"media_key": key, "modality": "audio", "source": "synthetic", "source_id": "a0", "uri": uri, "ext": "wav",
              "mime": "audio/wav", "bytes": len(data), "duration_s": 1.0, "sample_rate": 8000, "licence": "cc0",
              "grounding": GROUNDING}]
    base = {"lot_id": "audio-brief-0", "modality": "audio", "media_key": key, "instruction_type": "brief",
            "control": "style", "length_key": "word_exact:10", "length_constraint": TEN_WORDS, "split": "train",
            "seed": 1, "backend": "grounded", "model": "grounded-v1", "model_revision": "r1",
            "prompt_template_id": "audio/brief/chosen", "prompt_template_hash": "x", "gen_params": "{}", "attempts": 1,
            "check_passed": True, "check_failures": [], "judge_score": 0.9, "review_status": "auto",
            "review_decision": "accepted", "instruction": PASS["instruction"]}
    pairs = [
        dict(base, pair_id="p-pass", is_qcc=False, rejection_strategy="weak_model", chosen=PASS["chosen"],
             rejected=PASS["rejected"]),
        dict(base, pair_id="p-qcc", is_qcc=True, rejection_strategy="identical", chosen=PASS["chosen"],
             rejected=PASS["chosen"]),
        # a 9-word chosen caption under "exactly 10 words" (FAIL's caption)
        dict(base, pair_id="p-short", is_qcc=False, rejection_strategy="weak_model", chosen=FAIL["chosen"],
             rejected=PASS["rejected"]),
        dict(base, pair_id="p-same", is_qcc=False, rejection_strategy="weak_model", chosen=PASS["chosen"],
             rejected=PASS["chosen"] + " "),
    ]
    from acd.recipe import load_recipe

    recipe = load_recipe("demo", {"name": "check-test", "seed": 1, "qcc_share": 0.25, "checks": {"judge": "offline"},
                                  "review": {"compliance_bar": 0.95}})
    out = root / "out"
    write_outputs(rows_to_table(pairs, PAIR_SCHEMA), rows_to_table(media, MEDIA_SCHEMA), run, out, recipe, {})
    part = run / "ingest" / "audio-0000" / "part-0.parquet"
    part.parent.mkdir(parents=True)
    pq.write_table(pa.table({"media_key": [key], "modality": ["audio"], "grounding": [OTHER_GROUNDING]}), part)
    return {"out": out, "run": run}


def test_dataset_directory_and_its_acm_export_give_the_same_verdicts(dataset, tmp_path, capsys):
    out = dataset["out"]
    assert sorted(p.name for p in (out / "pairs").glob("*.parquet"))  # a real export: pairs/*.parquet
    assert _run(capsys, out, "--out", tmp_path / "ds.jsonl")[0] == 0
    res = _result(tmp_path / "ds.jsonl")
    assert res["p-pass"]["failures"] == [] and res["p-qcc"]["failures"] == []
    assert "length_chosen" in res["p-short"]["failures"] and res["p-same"]["failures"] == ["chosen_equals_rejected"]
    # acm/ holds the same pairs in the release's conversation format: read back, same verdicts (the length
    # sentence now comes from the instruction, the q-c-c flag from the q-c-c folder).
    assert _run(capsys, out / "acm", "--out", tmp_path / "acm.jsonl")[0] == 0
    acm = _result(tmp_path / "acm.jsonl")
    assert set(acm) == set(res) and all(acm[k]["failures"] == res[k]["failures"] for k in res), (acm, res)


def test_grounding_from_a_run_directory(dataset, tmp_path, capsys):
    # The run's ingest part says the clip holds only an engine: the chirp and horn are now false statements.
    rc, _, err = _run(capsys, dataset["out"], "--out", tmp_path / "g.jsonl", "--grounding-from", dataset["run"])
    assert rc == 0, err
    assert "fact_chosen" in _result(tmp_path / "g.jsonl")["p-pass"]["failures"]
    rc, _, err = _run(capsys, dataset["out"], "--out", tmp_path / "g.jsonl", "--grounding-from", tmp_path)
    assert rc == 2 and "no ingest parts" in err
    src = _jsonl(tmp_path / "nokey.jsonl", [PASS])
    rc, _, err = _run(capsys, src, "--out", tmp_path / "g.jsonl", "--grounding-from", dataset["run"])
    assert rc == 2 and "needs a media_key column" in err


# ------------------------------------------------------------------------------ the release's conversations
def test_aligner_prompt_round_trip_through_our_export_templates():
    from acd.export.acm_export import human_turn

    q = "Describe the dog's collar. " + TEN_WORDS
    a = "The dog's collar is red, isn't it? It reads 'Max'."
    for modality in ("image", "video", "audio"):
        for kind in ("q-a-c", "q-c-c"):
            assert split_human_turn(human_turn(modality, kind, q, a)) == (q, a), (modality, kind)


def test_the_release_prompt_variants_split():
    """The release's own forms (from its files, shortened): quoted with "'.The", unquoted video q-a-c with its
    doubled stop, audio q_c_a_org repeating the <audio> tag, audio q_c_a with no closing sentence."""
    tail = " You only need to answer the caption that better meets the requirements, and do not add anything else."
    head = "<image>\nYou are a multimodal aligner, and your task is to transform the existing caption into a caption " \
           "that better meets the requirements. The requirement is: "
    assert split_human_turn(head + "'Provide a concise caption.'.The existing caption is: 'A person stands.'." + tail) \
        == ("Provide a concise caption.", "A person stands.")
    assert split_human_turn(head + " poetic caption of the video..The existing caption is: In a chamber,\nShe stands.." +
                            " " + tail) == ("poetic caption of the video.", "In a chamber,\nShe stands.")
    assert split_human_turn(head.replace("<image>", "<audio>") + "<audio>\nDescribe this audio with a poem. The existing "
                            "caption is: A woman is speaking." + tail) == ("Describe this audio with a poem.",
                                                                           "A woman is speaking.")
    assert split_human_turn(head + "'Describe the events in this audio.' The existing caption is: 'Ticking.\n\n"
                            "Please note: slight inaccuracies.'") == ("Describe the events in this audio.",
                                                                      "Ticking.\n\nPlease note: slight inaccuracies.")
    assert split_human_turn("<audio>\nCan you provide a brief caption about this audio?") == (
        "Can you provide a brief caption about this audio?", None)


NEEDS_REF = pytest.mark.skipif(not (REFERENCE_DIR / "acd").is_dir(),
                               reason=f"AnyCap reference slice not found at {REFERENCE_DIR} (set ACD_REFERENCE)")


@NEEDS_REF
def test_acd_check_over_the_official_slice(tmp_path, capsys):
    """Every q-a-c / q-8b-c / q-c-c line of the release becomes one pair; gpt_q_c lines (no rejected caption)
    are no pairs. A real release finding: rejected captions that carry the generator's own commentary."""
    from acd.checks.official import measure_reference

    acd_dir = REFERENCE_DIR / "acd"
    lines = sum(len(p.read_text().splitlines()) for p in acd_dir.rglob("*.jsonl") if "gpt_q_c" not in p.parts)
    rc, out, err = _run(capsys, acd_dir, "--out", tmp_path / "ref.parquet")
    assert rc == 0, err
    res = _result(tmp_path / "ref.parquet")
    assert len(res) == lines and f"pairs: {lines}" in out
    table = read_pairs(acd_dir)
    rows = {r["pair_id"]: r for r in table.to_pylist()}
    assert all(r["instruction"] and "The existing caption is" not in r["instruction"] and r["rejected"]
               for r in rows.values())
    assert all(r["chosen"] == r["rejected"] for r in rows.values() if r["is_qcc"])
    note = "audio/q_c_a/q_c_a_Detail.jsonl:18"  # its rejected caption ends "...for generating slightly inferior captions"
    assert "generating slightly inferior captions" in rows[note]["rejected"] and "leak_rejected" in res[note]["failures"]
    clean = "image/q-c-c/new_40K_A_equal_C/result_ASM_v2/multi-class-position.jsonl:1"  # the mural's position
    assert "mural" in rows[clean]["chosen"] and res[clean]["failures"] == []
    # the make target's figures are the CLI's
    fig = measure_reference(REFERENCE_DIR)
    s = summarize(check_rows(table))
    assert fig["pairs"] == lines and fig["passed"] == s.passed
    assert [(r["reason"], r["count"]) for r in fig["reasons"]] == s.reasons
