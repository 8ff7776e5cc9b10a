"""Temp names parse in exactly one way, and a live writer's temp file is never taken for a dead one's.

The regression: a current name whose random token is all digits (`.x.png.4762@vm.48557357.tmp`, 2.3% of
names) parsed as the legacy name `.<name>.<pid>.tmp` of PID 48557357, which is dead, so the sweep removed
the file under its live writer.
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
import time

from hypothesis import given, settings, strategies as st

from acd import atomicio

N_NAMES = 30_000
# Pieces that make names hard to split: dots, '@', digits, hex, '.tmp', whole temp-name tails, odd characters.
PIECES = [".", "..", "@", "@@", ".tmp", "tmp", ".tmp.", "-", "_", " ", "x", "png", "x.png", "part-0.parquet",
          "audio-000000.tar", "0", "1", "42", "4762", "1234567", "12345678", "48557357", "140234567890123",
          "deadbeef", "0123abcd", "@vm", ".4762@vm.48557357", ".4762@vm.48557357.tmp", ".999999.tmp",
          ".1.140234567890123.tmp", "é", "日本", "\n", "\t", "\\", "*", "~"]
DIGITS, HEX = "0123456789", "0123456789abcdef"


def _name(rng: random.Random) -> str:
    return "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 6)))


def _token(rng: random.Random) -> str:
    """8 hex digits (the documented token), all digits half the time: the case the old grammar misread."""
    return "".join(rng.choice(DIGITS if rng.random() < 0.5 else HEX) for _ in range(8))


def _host(rng: random.Random) -> str:
    return rng.choice([atomicio._HOST, "vm", "1", "12345678", "node-07", "a-b-c", "host",
                       "".join(rng.choice("abcXYZ0189-") for _ in range(rng.randint(1, 12)))])


def _pid(rng: random.Random) -> int:
    return rng.choice([1, 2, 99, os.getpid(), rng.randint(1, 4_194_304), rng.randint(1, 99_999_999),
                       rng.randint(1, 10**15)])


def _forms(name: str) -> int:
    """How many of the grammar's forms match `name` (the grammar is unambiguous when this is at most 1)."""
    return sum(bool(r.fullmatch(name)) for r in (atomicio._CURRENT, atomicio._LEGACY, atomicio._LEGACY_THREAD))


def test_parse_gives_back_exactly_the_writer_over_many_names():
    rng = random.Random(24)
    all_digit_tokens = 0
    for _ in range(N_NAMES):
        name, pid, host, token = _name(rng), _pid(rng), _host(rng), _token(rng)
        all_digit_tokens += token.isdigit()
        made = atomicio.temp_name(name, pid, host, token)
        assert made.startswith(f".{name}.") and made.endswith(".tmp")
        assert atomicio.parse_temp_name(made) == atomicio.TempName(name, pid, host, token), made
        assert _forms(made) == 1, made
        # The legacy forms older builds wrote (PIDs of at most 7 digits; thread ids are pointers) parse as such.
        lpid, tid = rng.randint(1, 4_194_304), rng.randint(10**13, 2**47)
        for legacy in (f".{name}.{lpid}.tmp", f".{name}.{lpid}.{tid}.tmp"):
            assert atomicio.parse_temp_name(legacy) == atomicio.TempName(name, lpid, None, None), legacy
            assert _forms(legacy) == 1, legacy
    assert all_digit_tokens > N_NAMES // 10


@settings(max_examples=300, deadline=None)
@given(name=st.text(st.characters(blacklist_characters="/\x00"), min_size=1, max_size=40),
       pid=st.integers(1, 10**12), host=st.from_regex(r"[A-Za-z0-9-]{1,20}", fullmatch=True),
       token=st.from_regex(r"[0-9a-f]{8}", fullmatch=True))
def test_parse_round_trips_any_name(name, pid, host, token):
    made = atomicio.temp_name(name, pid, host, token)
    assert atomicio.parse_temp_name(made) == atomicio.TempName(name, pid, host, token)
    assert _forms(made) == 1


def test_tmp_path_is_the_one_temp_name():
    assert atomicio.TOKEN_LEN == 8 > atomicio.LEGACY_PID_MAX_DIGITS
    t = atomicio.tmp_path("/some/dir/x.4762@vm.48557357.tmp")
    assert t.parent.as_posix() == "/some/dir"
    w = atomicio.parse_temp_name(t.name)
    assert w is not None and (w.name, w.pid, w.host) == ("x.4762@vm.48557357.tmp", os.getpid(), atomicio._HOST)
    assert t.name == atomicio.temp_name(w.name, w.pid, w.host, w.token)
    for not_ours in (".x.png.tmp", "x.png.123.tmp", ".x.png", ".x.png.123@vm.0123abc.tmp",
                     ".x.png.123@vm.0123abcdd.tmp", ".x.png.123@vm.0123ABCD.tmp", ".x.png.12345678.tmp",
                     ".x.png.123@v.m.0123abcd.tmp", "..123.tmp", ".x.png.123.tmp\n", ".step-000100.tmp"):
        assert atomicio.parse_temp_name(not_ours) is None, not_ours


def test_a_live_writers_temp_files_are_never_swept(tmp_path):
    """The real sweep over thousands of this process's temp files (half with all-digit tokens): none goes;
    the same names with a dead writer's PID all go. Names are spelt out here, not made by the helper, so the
    test judges the sweep against the documented format."""
    me, host = os.getpid(), atomicio._HOST
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    rng = random.Random(5)
    root = tmp_path / "media"
    root.mkdir()
    live, gone = set(), set()
    # The name first: its token is all digits, and PID 48557357 is dead.
    live.add(root / f".x.png.{me}@{host}.48557357.tmp")
    for i in range(2000):
        name = _name(rng).replace("\n", "n").replace("\t", "t")  # keep each name one line in a failure message
        token = _token(rng)
        live.add(root / f".{name}.{me}@{host}.{token}.tmp")
        gone.add(root / f".{name}.{dead.pid}@{host}.{token}.tmp")
    gone.add(root / f".audio-000000.tar.{dead.pid}.tmp")  # a killed writer of an older build
    live.add(root / f".audio-000000.tar.{me}.tmp")  # ... and a live one's (never: it is this process)
    for p in live | gone:
        p.write_bytes(b"x")
    live_dir = root / f".step-000100.{me}@{host}.12345678.tmp"  # a checkpoint being saved (a temp directory)
    live_dir.mkdir()
    (live_dir / "model.pt").write_bytes(b"w")

    removed = set(atomicio.sweep_dead_temps(root))
    assert not (removed & live), sorted(p.name for p in removed & live)[:5]
    assert removed == gone
    assert all(p.exists() for p in live) and (live_dir / "model.pt").exists()
    now = time.time()
    assert not any(atomicio.is_dead_temp(p, now) for p in live)
