"""AnyCapEval over the official benchmark format: caption every item, score content and style, report.

    python -m acd.evaluation.anycapeval --bench <dir with {image,video,audio}/ref_*.jsonl> \
        --captioner grounded [--acm runs/acm/demo-tiny] [--media-root DIR] --out runs/anycapeval/x
    python -m acd.evaluation.anycapeval --sanity      # offline-judge sanity numbers on the reference

Captioners: `reference` (the benchmark's own caption: the ceiling), or any acd backend by name
(`grounded`, `openai`, ...; `name:role` picks a role, e.g. `grounded:rejected` as a deliberately weak
base). With --acm, every base caption is also refined by the ACM checkpoint: system `<base>+acm`, and the
report compares the two per modality and instruction type.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from acd.evaluation import report as report_mod
from acd.evaluation import scoring
from acd.paths import REFERENCE_DIR
from acd.taxonomy import MODALITIES, load_taxonomy, taxonomy_type

FILES = {"content": "ref_content.jsonl", "style": "ref_style.jsonl"}
SIDECAR = "grounding.jsonl"  # written by synthetic_split: {media, grounding}; not part of the official format


def load_benchmark(bench_dir: str | Path, modalities=MODALITIES, media_root: str | Path | None = None,
                   limit: int | None = None) -> list[dict[str, Any]]:
    """Items from <bench>/<modality>/ref_content.jsonl and ref_style.jsonl, normalised."""
    bench_dir = Path(bench_dir)
    items = []
    for modality in modalities:
        mdir = bench_dir / modality
        grounding = {}
        if (mdir / SIDECAR).exists():
            for line in (mdir / SIDECAR).read_text().splitlines():
                g = json.loads(line)
                grounding[g["media"]] = g["grounding"]
        for kind, fname in FILES.items():
            path = mdir / fname
            if not path.exists():
                continue
            rows = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
            for row in rows[:limit] if limit else rows:
                conv = row["conversations"]
                restriction = row.get("restriction") or [None, None]
                media = row.get(modality)
                roots = [Path(media_root) / modality, Path(media_root)] if media_root else []
                roots.append(mdir / "media")
                media_path = next((str(r / media) for r in roots if media and (r / media).exists()), None)
                items.append({
                    "uid": f"{modality}/{kind}/{row['id']}", "id": row["id"], "modality": modality, "kind": kind,
                    "media": media, "media_path": media_path, "instruction": conv[0]["value"],
                    "reference": conv[1]["value"], "release_type": restriction[0],
                    "instruction_type": taxonomy_type(restriction[0]),
                    "length_constraint": restriction[1] if len(restriction) > 1 else None,
                    "key_points": row.get("key_point") or [], "grounding": grounding.get(media),
                })
    return items


# --------------------------------------------------------------------------------------------- captioners
def caption_reference(items: list[dict]) -> list[dict]:
    return [{"caption": it["reference"], "error": None} for it in items]


def caption_backend(items: list[dict], spec: str, backend_config: dict | None = None) -> list[dict]:
    """Any acd backend; `name[:role[:strategy]]` (role defaults to "chosen"; strategy is the rejection
    strategy a rejected-role caption is written with, default weak_model: a weaker captioner; e.g.
    grounded:rejected:ignore_instruction is a captioner that ignores the control). Failed items keep error,
    caption ''."""
    from acd.backends.base import GenRequest, make_backend
    from acd.checks.length import parse_constraint

    name, _, rest = spec.partition(":")
    role, _, strategy = rest.partition(":")
    backend = make_backend({"name": name, **(backend_config or {})})
    reqs = []
    for i, it in enumerate(items):
        c = parse_constraint(it.get("length_constraint") or it["instruction"])
        pair = {"pair_id": it["uid"], "modality": it["modality"], "instruction_type": it["instruction_type"],
                "control": load_taxonomy().types[it["instruction_type"]].control
                if it["instruction_type"] in load_taxonomy().types else "style",
                "length_key": c.key if c else "none", "length_constraint": it.get("length_constraint"),
                "instruction": it["instruction"], "is_qcc": False, "rejection_strategy": strategy or "weak_model",
                "seed": 0, "key_points": it.get("key_points")}
        media = {"media_key": it["media"], "modality": it["modality"], "path": it.get("media_path"),
                 "grounding": json.dumps(it["grounding"]) if it.get("grounding") else None}
        reqs.append(GenRequest(request_id=f"{i}", role="chosen", pair=pair, media=media,
                               messages=[{"role": "user", "content": it["instruction"]}]))
    by_id = {r.request_id: r for r in backend.generate(reqs)}
    if role and role != "chosen":
        # A rejected caption is written against the chosen one (as in the pipeline): chosen first, then
        # the role asked for, over the items whose chosen caption came back.
        again = []
        for q in reqs:
            r = by_id.get(q.request_id)
            if r is not None and r.status == "ok" and r.text:
                again.append(GenRequest(request_id=q.request_id, role=role, pair={**q.pair, "chosen": r.text.strip()},
                                        media=q.media, messages=q.messages))
        by_id.update({r.request_id: r for r in backend.generate(again)})
    out = []
    for i in range(len(items)):
        r = by_id.get(str(i))
        ok = r is not None and r.status == "ok" and r.text
        out.append({"caption": r.text if ok else "", "error": None if ok else (r.error if r else "no result")})
    return out


def refine_with_acm(items: list[dict], base: list[dict], ckpt: str, batch_size: int = 8) -> list[dict]:
    """base+ACM: the ACM rewrites each base caption under the item's instruction (missing media -> blank)."""
    from acd.acm.infer import Refiner

    refiner = Refiner(ckpt)
    out: list[dict] = []
    for s in range(0, len(items), batch_size):
        chunk = list(zip(items[s:s + batch_size], base[s:s + batch_size]))
        texts = refiner.refine_batch([{"media": it.get("media_path"), "modality": it["modality"],
                                       "instruction": it["instruction"], "caption": b["caption"]} for it, b in chunk])
        out.extend({"caption": t, "error": b["error"]} for (_, b), t in zip(chunk, texts))
    return out


def run_captioner(items, spec: str, backend_config=None) -> list[dict]:
    return caption_reference(items) if spec == "reference" else caption_backend(items, spec, backend_config)


# ------------------------------------------------------------------------------------------------ scoring
def score(items: list[dict], captions: list[dict], system: str, judge, style_judge=None) -> list[dict]:
    from acd.checks.length import parse_constraint, satisfies

    style_llm = style_judge.score_many(items, [c["caption"] for c in captions]) if style_judge else None
    rows = []
    for i, (it, cap) in enumerate(zip(items, captions)):
        text = cap["caption"] or ""
        row = {"system": system, "uid": it["uid"], "modality": it["modality"], "kind": it["kind"],
               "instruction_type": it["instruction_type"], "caption": text, "error": cap.get("error"),
               "coverage": None, "kpd": None, "matched": None, "style": None,
               "length_ok": satisfies(text, parse_constraint(it.get("length_constraint") or it["instruction"]))}
        if it["kind"] == "content" and it["key_points"]:
            row.update(scoring.content_score(judge, text, it["key_points"]))
        if it["kind"] == "style":
            row.update(style_llm[i] if style_llm else scoring.style_score(judge, it, text))
        rows.append(row)
    return rows


def evaluate(bench_dir: str | Path, out_dir: str | Path, captioner: str = "reference", acm: str | None = None,
             modalities=MODALITIES, media_root=None, limit=None, backend_config=None,
             style_judge_config: dict | None = None, log=print) -> dict[str, Any]:
    items = load_benchmark(bench_dir, modalities, media_root, limit)
    if not items:
        raise FileNotFoundError(f"no benchmark items under {bench_dir} for {modalities}")
    judge = scoring.get_judge()
    style_judge = scoring.LLMStyleJudge(style_judge_config) if style_judge_config else None
    base = run_captioner(items, captioner, backend_config)
    if all(b["error"] for b in base):  # a table of zeros would read as a result; it is a broken captioner
        raise RuntimeError(f"captioner {captioner!r} failed on all {len(base)} items; first error: {base[0]['error']}")
    results = score(items, base, captioner, judge, style_judge)
    acm_system, acm_effect = None, None
    if acm:
        acm_system = f"{captioner}+acm"
        refined = refine_with_acm(items, base, acm)
        acm_rows = score(items, refined, acm_system, judge, style_judge)
        acm_effect = report_mod.acm_effect(base, refined, results, acm_rows)
        results += acm_rows
    meta = {"bench": str(Path(bench_dir).resolve()), "items": len(items), "captioner": captioner,
            "acm": str(Path(acm).resolve()) if acm else None,
            "judge": "llm" if style_judge else "offline (MiniLM)",
            "media_found": sum(1 for it in items if it.get("media_path"))}
    if acm_effect:
        meta["acm_effect"] = acm_effect["verdict"]
    paths = report_mod.write_report(out_dir, results, meta, base=captioner if acm else None, acm=acm_system)
    log(f"[anycapeval] {len(items)} items -> {paths['md']}")
    if acm_effect:
        log(f"[anycapeval] {acm_effect['verdict']}")
    return {"meta": meta, "paths": {k: str(Path(v).resolve()) for k, v in paths.items()},
            "summary": report_mod.aggregate(results)["rows"], "acm_effect": acm_effect}


def sanity(bench_dir: str | Path = REFERENCE_DIR / "anycapeval", log=print) -> dict[str, Any]:
    """Offline-judge sanity on the reference: key-point AUC (own vs other item) and length pass rate."""
    items = load_benchmark(bench_dir)
    judge = scoring.get_judge()
    out = {"keypoints": scoring.keypoint_auc(judge, items), "length": scoring.length_pass_rate(items)}
    log(json.dumps(out, indent=1))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="acd eval", description="AnyCapEval: caption, score content and style, report.")
    ap.add_argument("--bench", default=str(REFERENCE_DIR / "anycapeval"),
                    help="folder with <modality>/ref_content.jsonl and ref_style.jsonl")
    ap.add_argument("--captioner", default="reference", help="reference | <backend>[:role[:strategy]], e.g. grounded, grounded:rejected:ignore_instruction")
    ap.add_argument("--backend-config", default=None, help="JSON mapping passed to make_backend (besides name)")
    ap.add_argument("--acm", default=None, help="ACM checkpoint/run dir: also evaluate <captioner>+acm")
    ap.add_argument("--style-judge", default=None, help="JSON backend config for an LLM style judge (default offline)")
    ap.add_argument("--modalities", default=",".join(MODALITIES))
    ap.add_argument("--media-root", default=None, help="where the benchmark's media files are (optional)")
    ap.add_argument("--limit", type=int, default=None, help="first N rows of each file")
    ap.add_argument("--out", default="runs/anycapeval/latest")
    ap.add_argument("--sanity", action="store_true", help="print the offline judge's sanity numbers and exit")
    a = ap.parse_args(argv)
    if a.sanity:
        if not Path(a.bench).exists():
            print(f"benchmark folder {a.bench} not found", file=sys.stderr)
            return 2
        sanity(a.bench)
        return 0
    res = evaluate(a.bench, a.out, a.captioner, a.acm, tuple(a.modalities.split(",")), a.media_root, a.limit,
                   json.loads(a.backend_config) if a.backend_config else None,
                   json.loads(a.style_judge) if a.style_judge else None)
    print(Path(res["paths"]["md"]).read_text())
    if res.get("acm_effect"):  # the last line a `make eval` user sees: did the ACM do anything at all?
        print(res["acm_effect"]["verdict"])
    print(f"report: {res['paths']['md']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
