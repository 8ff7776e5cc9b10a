"""AnyCapEval report: per system x modality x instruction type, markdown + JSON, base vs base+ACM deltas."""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

METRICS = ("coverage", "kpd", "style", "length_ok")


def _mean(xs):
    xs = [float(x) for x in xs if x is not None]
    return round(sum(xs) / len(xs), 4) if xs else None


def aggregate(results: list[dict]) -> dict[str, Any]:
    """results: one row per (system, item) with the metric fields; groups by modality and by type."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in results:
        for key in ((r["system"], r["modality"], "ALL"), (r["system"], r["modality"], r["instruction_type"]),
                    (r["system"], "ALL", "ALL")):
            groups[key].append(r)
    rows = []
    for (system, modality, typ), rs in sorted(groups.items()):
        rows.append({"system": system, "modality": modality, "instruction_type": typ, "n": len(rs),
                     "failed": sum(1 for r in rs if r.get("error")),
                     **{m: _mean(r.get(m) for r in rs) for m in METRICS}})
    return {"rows": rows}


def compare(agg: dict, base: str, other: str) -> list[dict]:
    idx = {(r["system"], r["modality"], r["instruction_type"]): r for r in agg["rows"]}
    out = []
    for (s, m, t), r in idx.items():
        if s != base or (other, m, t) not in idx:
            continue
        o = idx[(other, m, t)]
        out.append({"modality": m, "instruction_type": t, "n": r["n"],
                    **{f"{k}_{base}": r[k] for k in METRICS}, **{f"{k}_{other}": o[k] for k in METRICS},
                    **{f"delta_{k}": (round(o[k] - r[k], 4) if o[k] is not None and r[k] is not None else None)
                       for k in METRICS}})
    return out


def acm_effect(base: list[dict], refined: list[dict], base_rows: list[dict], acm_rows: list[dict]) -> dict[str, Any]:
    """How many captions the ACM changed and on how many items any score moved, with a one-line verdict
    (a table where base+ACM equals base everywhere must say so, not leave the reader to notice)."""
    n = len(base)
    changed = sum(1 for b, r in zip(base, refined) if (b.get("caption") or "") != (r.get("caption") or ""))
    moved = sum(1 for a, b in zip(base_rows, acm_rows) if any(a.get(m) != b.get(m) for m in METRICS))
    if changed == 0:
        verdict = (f"ACM changed nothing: its captions equal the base captions on {n}/{n} items, so every "
                   "base+ACM score equals the base score")
    else:
        verdict = f"ACM rewrote {changed}/{n} captions; scores moved on {moved}/{n} items"
    return {"items": n, "captions_changed": changed, "scores_moved": moved, "verdict": verdict}


def _fmt(v):
    return "–" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def to_markdown(agg: dict, comparison: list[dict] | None, meta: dict) -> str:
    lines = ["# AnyCapEval report", ""]
    if meta.get("acm_effect"):
        lines += [f"**{meta['acm_effect']}.**", ""]
    for k, v in meta.items():
        lines.append(f"- **{k}**: {v}")
    lines += ["", "Content = key-point coverage and KPD (matched key points per 100 words, offline MiniLM judge); "
              "style = 0–4 rubric; length_ok = share meeting the length constraint.", "",
              "## Scores", "", "| system | modality | type | n | failed | coverage | KPD | style | length_ok |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in agg["rows"]:
        lines.append(f"| {r['system']} | {r['modality']} | {r['instruction_type']} | {r['n']} | {r['failed']} | "
                     + " | ".join(_fmt(r[m]) for m in METRICS) + " |")
    if comparison:
        base, other = meta.get("base_system"), meta.get("acm_system")
        lines += ["", f"## {other} vs {base}", "", "| modality | type | n | Δ coverage | Δ KPD | Δ style | Δ length_ok |",
                  "|---|---|---|---|---|---|---|"]
        for c in comparison:
            lines.append(f"| {c['modality']} | {c['instruction_type']} | {c['n']} | "
                         + " | ".join(_fmt(c[f'delta_{m}']) for m in METRICS) + " |")
    return "\n".join(lines) + "\n"


def write_report(out_dir: str | Path, results: list[dict], meta: dict, base: str | None = None,
                 acm: str | None = None) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    agg = aggregate(results)
    comparison = compare(agg, base, acm) if base and acm else None
    meta = {**meta, "base_system": base, "acm_system": acm}
    (out / "results.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results))
    (out / "report.json").write_text(json.dumps({"meta": meta, "summary": agg["rows"], "comparison": comparison},
                                                indent=1, ensure_ascii=False))
    (out / "report.md").write_text(to_markdown(agg, comparison, meta))
    return {"md": out / "report.md", "json": out / "report.json", "results": out / "results.jsonl"}
