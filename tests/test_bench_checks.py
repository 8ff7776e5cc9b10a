"""`make bench-checks` arithmetic (issue 21, point 7) and the honest automatic gate (point 9).

The labelled file here is synthetic (written to a tmp dir): real demo pairs from tests/test_check_cli.py with
made-up reader verdicts, arranged so every figure is known by hand. The real reader-labelled set
(tests/data/reader/) is scored by `make bench-checks`, never by a test (nothing may be tuned on it).
"""
from __future__ import annotations

import json

import pytest

from acd.checks import bench, measured
from acd.checks.rules import check_pair
from acd.confidence import wilson
from acd.review import present

from test_check_cli import FAIL, PASS, TEN_WORDS

SAME = dict(PASS, rejected=PASS["chosen"])  # a q-a-c pair whose rejected caption is its chosen one


def _row(base: dict, pid: str, **verdicts) -> dict:
    return dict(base, pair_id=pid, **verdicts)


ROWS = [
    # reader rejects: 4 (3 flagged)
    _row(FAIL, "r1", compliant=False, natural=True, rejected_worse=True),
    _row(FAIL, "r2", compliant="no", natural="yes", rejected_worse="yes"),  # verdicts as words read the same
    _row(SAME, "r3", compliant=True, natural=True, rejected_worse=False),
    _row(PASS, "r4", compliant=False, natural=False, rejected_worse=True),  # missed by the checks
    # reader accepts and finds natural: 6 (1 flagged)
    *[_row(PASS, f"a{i}", compliant=True, natural=True, rejected_worse=True) for i in range(4)],
    _row(dict(PASS, rejected=PASS["chosen"], is_qcc=True), "a-qcc", compliant=True, natural=True, rejected_worse=None),
    _row(FAIL, "a-flagged", compliant=True, natural=True, rejected_worse=True),
    # reader accepts, not natural: 2 (1 flagged)
    _row(PASS, "u1", compliant=True, natural=False, rejected_worse=True),
    _row(FAIL, "u2", compliant=True, natural=False, rejected_worse=True),
    # a verdict missing: counted nowhere
    _row(PASS, "n1", compliant=None, natural=True, rejected_worse=True),
]


def test_the_labelled_pairs_check_as_this_file_says():
    assert check_pair(PASS["instruction"], PASS["chosen"], PASS["rejected"], False, "none", None,
                      modality="audio", instruction_type="brief") == []
    assert check_pair(PASS["instruction"], PASS["chosen"], PASS["chosen"], True, "none", None, modality="audio",
                      instruction_type="brief") == []
    assert check_pair(SAME["instruction"], SAME["chosen"], SAME["rejected"], False, "none", None, modality="audio",
                      instruction_type="brief") == ["chosen_equals_rejected"]
    assert "length_chosen" in check_pair(FAIL["instruction"], FAIL["chosen"], FAIL["rejected"], False, "word_exact:10",
                                         TEN_WORDS, modality="video", instruction_type="event")


@pytest.fixture()
def labelled(tmp_path):
    d = tmp_path / "reader"
    d.mkdir()
    (d / "baseline_a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS[:7]))
    (d / "baseline_b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS[7:]))
    return d


def test_catch_and_false_alarm_arithmetic(labelled, tmp_path):
    out = tmp_path / "checks_measured.json"
    fig = bench.run(str(labelled / "*.jsonl"), out)
    assert fig["pairs"] == 13 and sorted(fig["files"]) == ["baseline_a.jsonl", "baseline_b.jsonl"]
    lo, hi = wilson(3, 4)
    assert fig["catch"] == {"k": 3, "n": 4, "rate": 0.75, "ci_low": round(lo, 4), "ci_high": round(hi, 4)}
    lo, hi = wilson(1, 6)
    assert fig["false_alarm"] == {"k": 1, "n": 6, "rate": round(1 / 6, 4), "ci_low": round(lo, 4), "ci_high": round(hi, 4)}
    assert (fig["accepts_unnatural"]["k"], fig["accepts_unnatural"]["n"]) == (1, 2) and fig["unjudged"] == 1
    assert {v: (r["k"], r["n"]) for v, r in fig["by_verdict"].items()} == {"not compliant": (2, 3),
                                                                           "rejected not worse": (1, 1)}
    mods = {m: ((v["catch"]["k"], v["catch"]["n"]), (v["false_alarm"]["k"], v["false_alarm"]["n"]))
            for m, v in fig["by_modality"].items()}
    assert mods == {"audio": ((1, 2), (0, 5)), "video": ((2, 2), (1, 1))}
    length = next(r for r in fig["by_reason"] if r["reason"] == "length_chosen")
    assert (length["flagged"], length["reader_rejects"], length["reader_accepts"], length["accepts_unnatural"]) == (4, 2, 1, 1)
    same = next(r for r in fig["by_reason"] if r["reason"] == "chosen_equals_rejected")
    assert (same["flagged"], same["reader_rejects"]) == (1, 1)
    assert json.loads(out.read_text()) == fig
    assert fig["checks_fingerprint"] == measured.checks_fingerprint()
    dev = fig["sets"]["development"]  # no heldout_*.jsonl here: every pair is development
    assert dev["pairs"] == 13 and (dev["catch"], dev["false_alarm"]) == (fig["catch"], fig["false_alarm"])
    assert dev["files"] == ["baseline_a.jsonl", "baseline_b.jsonl"] and fig["sets"]["heldout"]["pairs"] == 0


@pytest.fixture()
def split(tmp_path):
    """A development read and a held-out read (named heldout_*.jsonl), each with its salt."""
    d = tmp_path / "split"
    d.mkdir()
    by_id = {r["pair_id"]: r for r in ROWS}
    for name, salt, ids in (("baseline_a.jsonl", "reader-a-2026-12-07", ["r1", "r4", "a0", "a1", "u1"]),
                            ("heldout_c.jsonl", "reader-c-2026-12-08",
                             ["r2", "r3", "a2", "a3", "a-qcc", "a-flagged", "u2", "n1"])):
        (d / name).write_text("".join(json.dumps(dict(by_id[i], salt=salt)) + "\n" for i in ids))
    return d


def test_development_and_heldout_sets_are_scored_apart(split, tmp_path):
    fig = bench.run(str(split / "*.jsonl"), tmp_path / "m.json")
    dev, held = fig["sets"]["development"], fig["sets"]["heldout"]
    assert (dev["pairs"], dev["files"], dev["salts"]) == (5, ["baseline_a.jsonl"], ["reader-a-2026-12-07"])
    assert (held["pairs"], held["files"], held["salts"]) == (8, ["heldout_c.jsonl"], ["reader-c-2026-12-08"])
    k_n = lambda f, key: (f[key]["k"], f[key]["n"])  # noqa: E731
    assert (k_n(dev, "catch"), k_n(dev, "false_alarm"), k_n(dev, "accepts_unnatural")) == ((1, 2), (0, 2), (0, 1))
    assert (k_n(held, "catch"), k_n(held, "false_alarm"), k_n(held, "accepts_unnatural")) == ((2, 2), (1, 4), (1, 1))
    assert (k_n(fig, "catch"), k_n(fig, "false_alarm"), held["unjudged"], dev["unjudged"]) == ((3, 4), (1, 6), 1, 0)
    lo, hi = wilson(1, 4)
    assert held["false_alarm"] == {"k": 1, "n": 4, "rate": 0.25, "ci_low": round(lo, 4), "ci_high": round(hi, 4)}
    assert bench.set_of("heldout_c.jsonl") == "heldout" and bench.set_of("baseline_heldout.jsonl") == "development"


def test_bench_prints_each_set_and_only_aggregates_for_heldout(split, tmp_path, capsys):
    assert bench.main(["--labelled", str(split / "*.jsonl"), "--out", str(tmp_path / "m.json")]) == 0
    text = capsys.readouterr().out
    dev_at = text.index("DEVELOPMENT set (reads the checks were improved against: optimistic): 5 pairs")
    held_at = text.index("HELD-OUT set (never tuned on: the checks' measured catch rate): 8 pairs in heldout_c.jsonl")
    all_at = text.index("ALL labelled pairs together: 13")
    assert dev_at < held_at < all_at
    assert "checks flag 1/2 = 50.0% [" in text[dev_at:held_at] and "checks flag 2/2 = 100.0% [" in text[held_at:all_at]
    assert "checks flag 3/4 = 75.0% [" in text[all_at:]
    for pid in ("r2", "r3", "a-flagged", "u2", "n1"):  # no held-out pair is named
        assert f'"{pid}"' not in text and f" {pid} " not in text and f" {pid}\n" not in text


def test_bench_prints_the_figures(labelled, tmp_path, capsys):
    assert bench.main(["--labelled", str(labelled / "*.jsonl"), "--out", str(tmp_path / "m.json")]) == 0
    text = capsys.readouterr().out
    assert "reader rejects (compliant false or rejected_worse false): 4; checks flag 3/4 = 75.0% [" in text
    assert "HELD-OUT set (never tuned on: the checks' measured catch rate): no heldout_*.jsonl file" in text
    assert "catch rate; target >= 90%: not met" in text
    assert "reader accepts and finds natural: 6; checks flag 1/6 = 16.7% [" in text
    assert "false-alarm rate; target <= 10%: not met" in text
    assert any(line.startswith("video") and "2/2 = 100.0%" in line for line in text.splitlines())


def test_bench_bad_input(tmp_path, capsys):
    assert bench.main(["--labelled", str(tmp_path / "none*.jsonl"), "--out", ""]) == 2
    assert "no reader-labelled files match" in capsys.readouterr().err
    (tmp_path / "x.jsonl").write_text(json.dumps(dict(PASS, compliant=True)) + "\n")  # no natural, rejected_worse
    assert bench.main(["--labelled", str(tmp_path / "x.jsonl"), "--out", ""]) == 2
    assert "missing reader verdict column(s) natural, rejected_worse" in capsys.readouterr().err


# ------------------------------------------------------------------------------- the gate's wording (point 9)
AUTO_LOT = dict(lot_id="audio-brief-0000", mode="auto", decision="accepted", pending=True, n=84, sampled=84,
                compliance=1.0, ci_low=0.956, ci_high=1.0)
HUMAN_LOT = dict(lot_id="image-brief-0000", mode="label_studio", decision="accepted", n=38, sampled=41,
                 compliance=38 / 41, ci_low=0.885, ci_high=0.954)


def test_catch_rate_sentence_states_date_size_and_staleness(labelled, tmp_path):
    fig = bench.run(str(labelled / "*.jsonl"), None)
    s = measured.catch_rate_sentence(fig)  # development reads only: said so, and said to be optimistic
    assert s.startswith(f"Measured ({fig['measured']}) only on 13 reader-judged development pairs that the checks "
                        "were improved against (baseline_a.jsonl, baseline_b.jsonl), so these rates are likely "
                        "optimistic: the checks flag 75% [")
    assert "of the 4 pairs a reader rejects (catch rate)" in s and "17% [" in s
    assert "of the 6 a reader accepts and finds natural (false alarms)." in s and "earlier version" not in s
    assert s.endswith("No held-out set has been scored yet.")
    assert "measured with an earlier version of the checks" in measured.catch_rate_sentence(
        dict(fig, checks_fingerprint="0" * 16))
    assert "has not been measured yet" in measured.catch_rate_sentence({})
    old = {k: v for k, v in fig.items() if k != "sets"}  # a file written before sets: all pairs, no claim
    assert measured.catch_rate_sentence(old).startswith(f"Measured on 13 reader-judged pairs ({fig['measured']}): ")


def test_catch_rate_sentence_quotes_the_heldout_set(split):
    fig = bench.run(str(split / "*.jsonl"), None)
    s = measured.catch_rate_sentence(fig)
    assert s.startswith(f"Measured ({fig['measured']}) on a held-out set of 8 reader-judged pairs that nobody tuned "
                        "the checks on (heldout_c.jsonl, salt reader-c-2026-12-08): the checks flag 100% [")
    assert "of the 2 pairs the reader rejects (catch rate) and 25% [" in s
    assert "of the 4 the reader accepts and finds natural (false alarms)." in s
    assert "On the 5 development pairs the checks were improved against, they flag 50% and 0%." in s


def test_auto_lots_say_passed_automatic_checks_never_compliance(labelled, tmp_path, monkeypatch):
    """The sync's lines, the report's and the card's lot rows: compliance only from human verdicts."""
    path = tmp_path / "checks_measured.json"
    bench.run(str(labelled / "*.jsonl"), path)
    monkeypatch.setattr(measured, "BENCH_FILE", path)
    lines = present.text_lines([AUTO_LOT, HUMAN_LOT])
    assert "passed automatic checks 1.000 [0.956, 1.000]" in lines[0] and "compliance" not in lines[0]
    assert "compliance 0.927 [0.885, 0.954]" in lines[1] and "automatic" not in lines[1]
    assert lines[2].startswith("Lots without a human verdict show the share of pairs that passed automatic checks, "
                               "not compliance. Measured (")
    assert "only on 13 reader-judged development pairs" in lines[2]
    assert len(present.text_lines([HUMAN_LOT])) == 1  # every lot judged by people: no note
    auto, human = present.lot_row(AUTO_LOT), present.lot_row(HUMAN_LOT)
    assert (auto["passed automatic checks"], auto["compliance"]) == ("1.000", "–")
    assert (human["passed automatic checks"], human["compliance"]) == ("–", "0.927")

    from acd.report import _gate_note

    assert "(catch rate)" in _gate_note([AUTO_LOT, HUMAN_LOT]) and "not compliance" in _gate_note([AUTO_LOT])
    assert _gate_note([HUMAN_LOT]).startswith("Every lot's figure is compliance from human verdicts")
