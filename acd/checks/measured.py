"""What the checks were measured to do, for the report, the dataset card and the sync output.

Two data files, each written by a make target and committed, each stamped with the date, the set it was
measured on and a fingerprint of the check code and data it measured:
  schemas/checks_measured.json   `make bench-checks`: catch and false-alarm rates on the reader-labelled set,
                                 development and held-out reads apart (the held-out figure is the one quoted)
  schemas/reference_checks.json  `make reference-checks`: reason counts over the official AnyCap slice

Why files and not a measurement at export time: the card of a dataset must not depend on which folders sit
next to the machine that exported it, and a figure is only honest beside the date and the checks it was
measured with. The fingerprint says when the checks have changed since (the card and report then say the
figure was measured with an earlier version of the checks, rather than pass it off as current).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from acd.paths import PACKAGE_DIR, SCHEMAS_DIR

BENCH_FILE = SCHEMAS_DIR / "checks_measured.json"
REFERENCE_FILE = SCHEMAS_DIR / "reference_checks.json"

# Modules of acd/checks that report on the checks but decide nothing (editing them does not change a verdict).
_NOT_DECIDING = {"__init__.py", "table.py", "conversations.py", "bench.py", "official.py", "measured.py",
                 "judge.py", "lot.py", "neardup.py"}
_DATA = ("checks.yaml", "contracts.yaml", "taxonomy.yaml")


def checks_fingerprint() -> str:
    """sha256 (16 hex) over the deciding check modules and the data they read, by relative path."""
    h = hashlib.sha256()
    files = [(f"acd/checks/{p.name}", p) for p in sorted((PACKAGE_DIR / "checks").glob("*.py"))
             if p.name not in _NOT_DECIDING]
    files += [("acd/lexicon.py", PACKAGE_DIR / "lexicon.py")]  # the plurals and wordings they read captions with
    files += [(f"schemas/{n}", SCHEMAS_DIR / n) for n in _DATA if (SCHEMAS_DIR / n).exists()]
    for name, p in files:  # named by repository path, so a checkout and an installed wheel agree
        h.update(name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def load(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def _ci(lo: float | None, hi: float | None) -> str:
    return "" if lo is None or hi is None else f" [{100 * lo:.0f}, {100 * hi:.0f}]"


def _rates(f: dict, who: str) -> str:
    c, a = f["catch"], f["false_alarm"]
    return (f"the checks flag {_pct(c['rate'])}{_ci(c['ci_low'], c['ci_high'])} of the {c['n']} pairs {who} "
            f"rejects (catch rate) and {_pct(a['rate'])}{_ci(a['ci_low'], a['ci_high'])} of the {a['n']} {who} "
            f"accepts and finds natural (false alarms)")


def _read_name(s: dict) -> str:
    """The files and the salts (a salt names a read and its date, docs/reading.md) of one set."""
    names = ", ".join(s.get("files") or [])
    return names + (f", salt {', '.join(s['salts'])}" if s.get("salts") else "")


def catch_rate_sentence(figures: dict | None = None) -> str:
    """The checks' measured catch and false-alarm rates with the set, its size and the date.

    The held-out set (reads nobody tuned the checks on) gives the figure quoted as the catch rate; the
    development set (reads the checks were improved against) is named beside it as what it is. Without a
    held-out set the sentence says the rates are development figures, likely optimistic. Says plainly when
    nothing was measured, or when the checks changed since."""
    f = figures if figures is not None else load(BENCH_FILE)
    if not f or not f.get("pairs"):
        return ("The checks' catch rate on reader-judged pairs has not been measured yet (`make bench-checks`), "
                "so how many non-compliant pairs pass them is unknown.")
    sets = f.get("sets") or {}
    held, dev = sets.get("heldout") or {}, sets.get("development") or {}
    if held.get("pairs"):
        s = (f"Measured ({f['measured']}) on a held-out set of {held['pairs']} reader-judged pairs that nobody "
             f"tuned the checks on ({_read_name(held)}): {_rates(held, 'the reader')}.")
        if dev.get("pairs"):
            s += (f" On the {dev['pairs']} development pairs the checks were improved against, they flag "
                  f"{_pct(dev['catch']['rate'])} and {_pct(dev['false_alarm']['rate'])}.")
    elif sets:
        s = (f"Measured ({f['measured']}) only on {dev['pairs']} reader-judged development pairs that the checks "
             f"were improved against ({_read_name(dev)}), so these rates are likely optimistic: "
             f"{_rates(dev, 'a reader')}. No held-out set has been scored yet.")
    else:  # a file written before the sets were told apart: every pair counted, none known to be held out
        s = f"Measured on {f['pairs']} reader-judged pairs ({f['measured']}): {_rates(f, 'a reader')}."
    if f.get("checks_fingerprint") != checks_fingerprint():
        s += " These rates were measured with an earlier version of the checks (rerun `make bench-checks`)."
    return s


def reference_stale(figures: dict | None) -> bool:
    return bool(figures) and figures.get("checks_fingerprint") != checks_fingerprint()
