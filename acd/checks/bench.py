"""`make bench-checks`: how well the automatic checks agree with blind readers, on the reader-labelled set.

    python -m acd.checks.bench [--labelled 'tests/data/reader/*.jsonl'] [--out schemas/checks_measured.json]

The set (tests/data/reader/*.jsonl) holds one pair per line: the pair columns `acd check` reads, its
grounding, and a reader's verdicts `compliant`, `natural`, `rejected_worse` (true/false). Every pair goes
through `acd check`'s engine (acd.checks.table: the build's per-pair checks, nothing else), then:

  reader rejects  compliant is false, or rejected_worse is false (not asked of a q-c-c pair)
  reader accepts  compliant true, rejected_worse true (or q-c-c) and natural true
  catch rate      share of reader-rejected pairs the checks flag
  false alarms    share of reader-accepted pairs the checks flag

A pair accepted but not natural belongs to neither group; a pair with a verdict missing neither. Rates come
with a Wilson 95% interval. The checks run with their committed settings.

Two kinds of labelled file, scored apart and together:
  development  every file but heldout_*.jsonl: reads the checks were improved against (their misses were
               looked at, rules added for them), so their rates are optimistic
  held-out     heldout_*.jsonl: reads nobody looked at while changing the checks; only aggregate figures
               are ever printed for them. Their rates are the checks' measured catch rate.
The figures go to a JSON file (schemas/checks_measured.json) that the report and the dataset card quote.
"""
from __future__ import annotations

import argparse
import fnmatch
import glob
import hashlib
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow as pa

from acd.checks.measured import BENCH_FILE, checks_fingerprint
from acd.checks.table import BadInput, as_bool, check_rows, read_pairs
from acd.confidence import wilson

DEFAULT_GLOB = "tests/data/reader/*.jsonl"
VERDICTS = ("compliant", "natural", "rejected_worse")
TARGETS = {"catch": 0.90, "false_alarm": 0.10}  # the bar: flag >= 90% rejected, <= 10% accepted
HELDOUT_PATTERN = "heldout_*.jsonl"  # a file named so is a held-out read: never tuned on, never shown per pair
SETS = ("development", "heldout")


def set_of(file_name: str) -> str:
    """'heldout' for a file named heldout_*.jsonl, else 'development'."""
    return "heldout" if fnmatch.fnmatch(file_name, HELDOUT_PATTERN) else "development"


def read_labelled(paths: list[Path]) -> pa.Table:
    tables = []
    for p in paths:
        t = read_pairs(p)
        missing = [v for v in VERDICTS if v not in t.column_names]
        if missing:
            raise BadInput(f"{p}: missing reader verdict column(s) {', '.join(missing)}")
        tables.append(t.append_column("labelled_file", pa.array([p.name] * t.num_rows, pa.string())))
    if not tables:
        raise BadInput("no labelled files")
    return pa.concat_tables(tables, promote_options="permissive")


def verdict_groups(row: dict) -> str | None:
    """'rejects', 'accepts' (and natural), 'accepts_unnatural', or None when a needed verdict is missing."""
    pid = row["pair_id"]
    compliant = as_bool(row.get("compliant"), "compliant", pid)
    worse = as_bool(row.get("rejected_worse"), "rejected_worse", pid)
    natural = as_bool(row.get("natural"), "natural", pid)
    qcc = bool(as_bool(row.get("is_qcc"), "is_qcc", pid))
    if compliant is False or (worse is False and not qcc):
        return "rejects"
    if compliant is None or (worse is None and not qcc):
        return None
    if natural is None:
        return None
    return "accepts" if natural else "accepts_unnatural"


def _rate(k: int, n: int) -> dict:
    lo, hi = wilson(k, n) if n else (None, None)
    return {"k": k, "n": n, "rate": round(k / n, 4) if n else None,
            "ci_low": None if lo is None else round(lo, 4), "ci_high": None if hi is None else round(hi, 4)}


def measure(labelled: pa.Table) -> dict:
    """The figures over every labelled pair (top level, as before), and the same figures per set
    (`sets`: development, heldout) with the files, readers and salts each set holds."""
    result = check_rows(labelled)
    rows = labelled.to_pylist()
    fails = result.column("failures").to_pylist()  # row-aligned with the input (pair ids may repeat across files)
    fig = _figures(rows, fails)
    fig["sets"] = {}
    for name in SETS:
        idx = [i for i, r in enumerate(rows) if set_of(r.get("labelled_file") or "") == name]
        sub = _figures([rows[i] for i in idx], [fails[i] for i in idx])
        del sub["measured"], sub["checks_fingerprint"], sub["targets"]  # the same as the top level's
        # Which read: the salt names the read and its date (docs/reading.md); constant per file, no row's content.
        for key in ("reader", "salt"):
            sub[key + "s"] = sorted({str(rows[i][key]) for i in idx if rows[i].get(key)})
        sub["files"] = sorted({rows[i]["labelled_file"] for i in idx})
        fig["sets"][name] = sub
    return fig


def _figures(rows: list[dict], fails: list[list[str]]) -> dict:
    """Catch and false-alarm rates, per modality, per rejecting verdict, per reason, of these rows."""
    groups = Counter()
    by_mod: dict[str, Counter] = defaultdict(Counter)
    by_verdict: Counter = Counter()
    reasons: dict[str, Counter] = defaultdict(Counter)
    for r, f in zip(rows, fails):
        g = verdict_groups(r) or "unjudged"
        flagged = bool(f)
        groups[g] += 1
        groups[g + "_flagged"] += flagged
        m = r.get("modality") or "?"
        by_mod[m]["pairs"] += 1
        by_mod[m][g] += 1
        by_mod[m][g + "_flagged"] += flagged
        if g == "rejects":
            pid = r["pair_id"]
            for verdict, bad in (("not compliant", as_bool(r.get("compliant"), "compliant", pid) is False),
                                 ("rejected not worse", as_bool(r.get("rejected_worse"), "rejected_worse", pid) is False
                                  and not as_bool(r.get("is_qcc"), "is_qcc", pid))):
                if bad:
                    by_verdict[verdict] += 1
                    by_verdict[verdict + "_flagged"] += flagged
        for code in set(f):
            reasons[code]["flagged"] += 1
            reasons[code][g] += 1
    return {
        "measured": time.strftime("%Y-%m-%d", time.gmtime()),
        "pairs": len(rows),
        "checks_fingerprint": checks_fingerprint(),
        "catch": _rate(groups["rejects_flagged"], groups["rejects"]),
        "false_alarm": _rate(groups["accepts_flagged"], groups["accepts"]),
        "accepts_unnatural": _rate(groups["accepts_unnatural_flagged"], groups["accepts_unnatural"]),
        "unjudged": groups["unjudged"],
        "targets": TARGETS,
        "by_verdict": {v: _rate(by_verdict[v + "_flagged"], by_verdict[v])
                       for v in ("not compliant", "rejected not worse")},
        "by_modality": {m: {"pairs": c["pairs"], "catch": _rate(c["rejects_flagged"], c["rejects"]),
                            "false_alarm": _rate(c["accepts_flagged"], c["accepts"])}
                        for m, c in sorted(by_mod.items())},
        "by_reason": [{"reason": code, "flagged": c["flagged"], "reader_rejects": c["rejects"],
                       "reader_accepts": c["accepts"], "accepts_unnatural": c["accepts_unnatural"]}
                      for code, c in sorted(reasons.items(), key=lambda kv: (-kv[1]["flagged"], kv[0]))],
    }


def _fmt(r: dict) -> str:
    if not r["n"]:
        return "–   (none)"
    return f"{r['k']}/{r['n']} = {100 * r['rate']:.1f}% [{100 * r['ci_low']:.1f}, {100 * r['ci_high']:.1f}]"


def _headline(fig: dict) -> list[str]:
    c, a = fig["catch"], fig["false_alarm"]
    return [f"reader rejects (compliant false or rejected_worse false): {c['n']}; checks flag {_fmt(c)}  "
            f"[catch rate; target >= {100 * TARGETS['catch']:.0f}%: {'met' if c['n'] and c['rate'] >= TARGETS['catch'] else 'not met'}]",
            f"reader accepts and finds natural: {a['n']}; checks flag {_fmt(a)}  "
            f"[false-alarm rate; target <= {100 * TARGETS['false_alarm']:.0f}%: "
            f"{'met' if a['n'] and a['rate'] <= TARGETS['false_alarm'] else 'not met'}]",
            f"reader accepts, not natural: {fig['accepts_unnatural']['n']}; checks flag {_fmt(fig['accepts_unnatural'])}",
            f"verdict missing (not counted): {fig['unjudged']}"]


def _by_verdict_and_modality(fig: dict) -> list[str]:
    out = ["rejected pairs by the reader's reason:"]
    out += [f"  {v:<20} checks flag {_fmt(r)}" for v, r in fig["by_verdict"].items()]
    out += [f"{'modality':<9} {'pairs':>5}  {'catch rate':<32} false-alarm rate"]
    out += [f"{m:<9} {v['pairs']:>5}  {_fmt(v['catch']):<32} {_fmt(v['false_alarm'])}" for m, v in fig["by_modality"].items()]
    return out


_SET_TITLES = {"development": "DEVELOPMENT set (reads the checks were improved against: optimistic)",
               "heldout": "HELD-OUT set (never tuned on: the checks' measured catch rate)"}


def lines(fig: dict) -> list[str]:
    """The printed figures: each set's headline and its per-verdict and per-modality rates, then all pairs
    together, then the per-reason table of the development set only (a held-out set is shown in aggregate)."""
    out = [f"pairs: {fig['pairs']} (files: {', '.join(fig.get('files', {})) or '–'})"]
    sets = fig.get("sets") or {}
    for name in SETS:
        sub = sets.get(name)
        if not sub or not sub["pairs"]:
            out += ["", f"{_SET_TITLES[name]}: no {HELDOUT_PATTERN if name == 'heldout' else 'development'} file"]
            continue
        out += ["", f"{_SET_TITLES[name]}: {sub['pairs']} pairs in {', '.join(sub['files'])}"
                    + (f" (salt {', '.join(sub['salts'])})" if sub.get("salts") else "")]
        out += _headline(sub) + _by_verdict_and_modality(sub)
    out += ["", f"ALL labelled pairs together: {fig['pairs']}"] + _headline(fig)
    dev = sets.get("development") or fig
    out += ["", "development set: reason (a pair may have several)  flagged  reader-rejected  reader-accepted  "
                "accepted-unnatural"]
    out += [f"  {r['reason']:<48} {r['flagged']:>7}  {r['reader_rejects']:>15}  {r['reader_accepts']:>15}  "
            f"{r['accepts_unnatural']:>18}" for r in dev["by_reason"]] or ["  (no check flagged any pair)"]
    return out


def run(pattern: str = DEFAULT_GLOB, out: str | Path | None = BENCH_FILE) -> dict:
    paths = [Path(p) for p in sorted(glob.glob(pattern))]
    if not paths:
        raise BadInput(f"no reader-labelled files match {pattern} (the blind reads land in tests/data/reader/)")
    fig = measure(read_labelled(paths))
    fig["files"] = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in paths}
    if out:
        from acd.atomicio import write_text

        write_text(out, json.dumps(fig, indent=2, sort_keys=True) + "\n")
    return fig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench-checks", description=__doc__.split("\n\n")[0])
    ap.add_argument("--labelled", default=DEFAULT_GLOB, help="glob of reader-labelled JSONL files")
    ap.add_argument("--out", default=str(BENCH_FILE), help="JSON file for the figures ('' writes none)")
    args = ap.parse_args(argv)
    try:
        fig = run(args.labelled, args.out or None)
    except BadInput as exc:
        print(f"bench-checks: error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines(fig)))
    if args.out:
        print(f"\nfigures written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
