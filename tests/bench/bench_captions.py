"""Caption quality figures of a build, beside the official AnyCap captions' (issue 14).

Reads a built dataset (default: builds the demo recipe into a temporary directory through `acd build`)
and prints, for the chosen captions: grammar problems (acd/checks/grammar.py), fact-check failures for
grounded media, length constraints failed under either reading (words; sentences and lines for poems),
distinct word 3-grams and the stock 5-word phrase share over 600 captions and mean words per type, each beside the official figure
(schemas/reference_figures.yaml; recomputed from the reference release when it is present).
Targets: 0 grammar problems, 0 fact failures, 0 length failures, distinct 3-grams >= 0.55.

    .venv/bin/python tests/bench/bench_captions.py [--dataset out/demo] [--reference ../shared/reference/anycap]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", help="a built dataset directory (default: build the demo recipe)")
    ap.add_argument("--reference", help="the official release slice, to recompute its figures")
    ap.add_argument("--write-reference", action="store_true", help="store the recomputed official figures")
    args = ap.parse_args()

    import duckdb
    import yaml

    from acd.checks.factcheck import problems as fact_problems
    from acd.checks.grammar import problems as grammar_problems
    from acd.checks.length import satisfies
    from acd.taxonomy import LengthConstraint
    from acd.textstats import figures, official_captions, reference_figures

    ds = Path(args.dataset) if args.dataset else None
    if ds is None:
        ds = Path(tempfile.mkdtemp(prefix="acd-bench-captions-")) / "demo"
        subprocess.run([sys.executable, "-m", "acd.cli", "build", "--recipe", "demo", "--out", str(ds)],
                       check=True, cwd=ROOT)
    rows = duckdb.sql(f"select modality, instruction_type, chosen, instruction, length_key, media_key "
                      f"from '{ds}/pairs/*.parquet'").fetchall()
    media = {}
    for f in sorted((ds / "shards").rglob("*.tar")):
        import tarfile

        with tarfile.open(f) as tf:
            for m in tf.getmembers():
                if m.name.endswith(".json"):
                    d = json.loads(tf.extractfile(m).read())
                    key = d.get("media_key") or Path(m.name).name.split(".")[0]
                    media[key] = d.get("grounding")
    grammar = [r for r in rows if grammar_problems(r[2], r[0])]
    facts = [r for r in rows if media.get(r[5]) and fact_problems(r[2], r[0], media[r[5]], r[3])]
    length = [r for r in rows if r[4] != "none" and not satisfies(r[2], LengthConstraint.from_key(r[4]))]
    ours = figures([(m, t, c) for m, t, c, *_ in rows])
    ref = reference_figures()
    if args.reference:
        ref = {**ref, **figures(official_captions(args.reference))}
        if args.write_reference:
            p = ROOT / "schemas" / "reference_figures.yaml"
            head = "".join(ln for ln in p.read_text().splitlines(True) if ln.startswith("#"))
            body = {k: v for k, v in ref.items() if k != "stock_5gram"}  # numbers only, no release text
            p.write_text(head + yaml.safe_dump(body, sort_keys=False))
    print(f"dataset: {ds} ({len(rows)} pairs; grounding found for {sum(1 for r in rows if media.get(r[5]))})")
    print(f"chosen with grammar problems : {len(grammar)}   (target 0)")
    print(f"chosen failing the fact check: {len(facts)}   (target 0)")
    print(f"chosen failing a length reading: {len(length)}   (target 0)")
    print(f"distinct word 3-grams (600)  : ours {ours['distinct_3grams_600']}   official {ref['distinct_3grams_600']}   (target >= 0.55)")
    print(f"stock 5-word phrase share    : ours {ours['stock_5gram_share_600']} ({ours['stock_5gram']!r})   "
          f"official {ref.get('stock_5gram_share_600')}   (captions carrying the commonest 5-gram)")
    print(f"mean words per chosen caption: ours {ours['mean_words']}   official {ref['mean_words']}")
    print(f"{'type':24s} {'ours':>6s} {'official':>9s}")
    for k in sorted(set(ours["mean_words_by_type"]) | set(ref["mean_words_by_type"])):
        print(f"{k:24s} {ours['mean_words_by_type'].get(k, float('nan')):6.1f} {ref['mean_words_by_type'].get(k, float('nan')):9.1f}")
    for r in (grammar + facts)[:5]:
        print("  e.g.", r[0], r[1], "|", r[2][:160])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
