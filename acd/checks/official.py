"""`make reference-checks`: `acd check` over the official AnyCap reference slice, as numbers for the card.

    python -m acd.checks.official [--reference ../shared/reference/anycap] [--out schemas/reference_checks.json]

Reads the release's ACD training files (InternVL conversations, acd.checks.conversations) where they lie,
at run time; only counts are written (schemas/reference_checks.json), no release text. The dataset card's
comparison section and the README quote that file; see acd.checks.measured for why a file and not a
measurement at export time.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa

from acd.checks.measured import REFERENCE_FILE, checks_fingerprint
from acd.checks.table import BadInput, check_rows, summarize


def measure_reference(ref_dir: str | Path) -> dict:
    from acd.checks.conversations import read_conversations

    ref_dir = Path(ref_dir)
    if not (ref_dir / "acd").is_dir():
        raise BadInput(f"{ref_dir}: no acd/ folder (the AnyCap reference slice; set ACD_REFERENCE or --reference)")
    conv = read_conversations(ref_dir / "acd")
    table = pa.Table.from_pylist(conv.rows)
    result = check_rows(table)
    s = summarize(result)
    kinds = Counter(zip(table.column("modality").to_pylist(), table.column("kind").to_pylist()))
    passed_by_mod = Counter(m for m, ok in zip(table.column("modality").to_pylist(), result.column("passed").to_pylist()) if ok)
    pairs_by_mod = Counter(table.column("modality").to_pylist())
    # Which kind of release pair each reason falls on: a rejected_not_worse on q-8b-c pairs (weak_model) reads
    # differently from one on q-a-c pairs (no recorded strategy, so never checked).
    kind_of = table.column("kind").to_pylist()
    by_kind_reason: dict[str, Counter] = {}
    for k, f in zip(kind_of, result.column("failures").to_pylist()):
        for code in set(f):
            by_kind_reason.setdefault(code, Counter())[k] += 1
    return {
        "source": "AnyCap reference slice, acd/ (ACD training files: q-a-c, q-8b-c, q-c-c)",
        "measured": time.strftime("%Y-%m-%d", time.gmtime()),
        "checks_fingerprint": checks_fingerprint(),
        "pairs": s.pairs, "passed": s.passed, "pass_rate": round(s.pass_rate, 4),
        "files": conv.files, "not_pairs": dict(sorted(conv.skipped.items())),
        "by_kind": {f"{m}/{k}": n for (m, k), n in sorted(kinds.items())},
        "by_modality": {m: {"pairs": n, "passed": passed_by_mod[m]} for m, n in sorted(pairs_by_mod.items())},
        "reasons": [dict(r, by_kind=dict(sorted(by_kind_reason[r["reason"]].items()))) for r in s.rows()],
        "kinds": sorted(set(kind_of)),
    }


def markdown(fig: dict) -> str:
    out = [f"{fig['pairs']} pairs read ({', '.join(f'{k} {v}' for k, v in fig['by_kind'].items())}); "
           f"{fig['passed']} ({100 * fig['pass_rate']:.1f}%) pass every check. Measured {fig['measured']}.", "",
           "| reason | count | share | " + " | ".join(fig["kinds"]) + " |",
           "|---|---:|---:|" + "---:|" * len(fig["kinds"])]
    out += [f"| {r['reason']} | {r['count']} | {100 * r['share']:.1f}% | "
            + " | ".join(str(r["by_kind"].get(k, 0)) for k in fig["kinds"]) + " |" for r in fig["reasons"]]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    from acd.paths import REFERENCE_DIR

    ap = argparse.ArgumentParser(prog="reference-checks", description=__doc__.split("\n\n")[0])
    ap.add_argument("--reference", default=str(REFERENCE_DIR), help="the AnyCap reference slice folder")
    ap.add_argument("--out", default=str(REFERENCE_FILE), help="JSON file for the figures ('' writes none)")
    args = ap.parse_args(argv)
    try:
        fig = measure_reference(args.reference)
    except BadInput as exc:
        print(f"reference-checks: error: {exc}", file=sys.stderr)
        return 2
    print(markdown(fig))
    if args.out:
        from acd.atomicio import write_text

        write_text(args.out, json.dumps(fig, indent=2, sort_keys=True) + "\n")
        print(f"\nfigures written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
