"""A synthetic AnyCapEval split in the official format, built from media rows with grounding.

Output, per modality: ref_content.jsonl (with `key_point`), ref_style.jsonl (same keys as the reference
files), the media files under media/, and grounding.jsonl (a sidecar: {media, grounding}; the official
files have no such column, so the format of the ref_*.jsonl files is unchanged).

Key points come from the grounding facts: with phrasing "eval" in the release's wording
(_derive_key_points, for synthetic_eval.yaml's fixed instructions); with phrasing "dataset" from
acd.grounded.keypoints for exactly what the build-worded instruction names. Reference captions are composed
from the key points (exact, but plain).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import yaml

from acd.paths import SCHEMAS_DIR
from acd.taxonomy import LengthConstraint, load_taxonomy

REF_KEYS = {"image": ("id", "image", "conversations", "width", "height", "restriction"),
            "video": ("id", "video", "conversations", "width", "height", "restriction"),
            "audio": ("id", "audio", "conversations", "time_long", "restriction")}


def _spec() -> dict:
    return yaml.safe_load((SCHEMAS_DIR / "acm" / "synthetic_eval.yaml").read_text())


def _name(o: dict) -> str:
    return " ".join(x for x in (o.get("colour"), o.get("category") or o.get("source")) if x)


def _derive_key_points(g: dict, instruction_type: str, excluded: str | None = None) -> list[str]:
    """Key points in the release's style ("mention ...", "describe ... (detail)") from grounding facts."""
    objs = [o for o in g.get("objects", []) if o.get("category") != excluded]
    sounds = g.get("sounds", [])
    scene = g.get("scene", {})
    by_id = {o.get("id"): o for o in g.get("objects", []) + sounds}
    kp: list[str] = []
    if instruction_type == "position":
        kp = [f"describe the position of the {_name(o)} ({o.get('position')})" for o in objs if o.get("position")]
    elif instruction_type == "appearance":
        kp = [f"describe the appearance of the {o.get('category')} ({', '.join(x for x in [o.get('colour'), o.get('size')] + list(o.get('attributes', [])) if x)})"
              for o in objs]
    elif instruction_type == "action":
        kp = [f"describe the action of the {_name(o)} ({o['action']})" for o in objs if o.get("action")]
    elif instruction_type == "camera":
        cam = g.get("camera", {})
        kp = [f"describe the camera motion ({' '.join(x for x in (cam.get('speed'), cam.get('motion')) if x)})"]
    elif instruction_type == "background":
        kp = [f"describe the background ({scene.get('background')})"] + (
            [f"mention the {scene['background_colour']} colour of the background"] if scene.get("background_colour") else [])
    elif instruction_type == "event":
        for e in g.get("events", []):
            names = [_name(by_id[i]) for i in e.get("objects", e.get("sounds", [])) if i in by_id]
            if names:
                kp.append(f"mention the {e['type']} of the {' and '.join(names)}")
        kp += [f"mention the sound of a {s.get('source')} ({s.get('pattern') or s.get('pitch', '')})".replace(" ()", "")
               for s in sounds if not any(s.get("source", "") in k for k in kp)]
    else:  # instance and anything else: the objects (or sounds) that must be there
        kp = [f"mention the {_name(o)}" for o in objs] + [f"mention the sound of a {s.get('source')}" for s in sounds]
    return [k for k in kp if k] or [f"mention the {scene.get('background', 'scene')}"]


def _reference_caption(key_points: list[str]) -> str:
    import re

    parts = []
    for k in key_points:
        k = re.sub(r"^(mention|describe|explain)\s+", "", k)
        k = k.replace("(", "as ").replace(")", "")
        parts.append(k[0].upper() + k[1:] + ".")
    return " ".join(parts)


def _fill(template: str, modality: str, g: dict, i: int, spec: dict) -> tuple[str, str | None]:
    objs = g.get("objects", []) or [{"category": s.get("source")} for s in g.get("sounds", [])]
    first = objs[0].get("category") if objs else "main subject"
    excluded = first if "{object}" in template and len(objs) > 1 else None
    text = template.format(modality=modality, object=first, objects=" and ".join(dict.fromkeys(
        o.get("category") for o in objs)) or "objects", theme=g.get("scene", {}).get("mood", "overall"),
        role=spec["roles"][i % len(spec["roles"])])
    return text, excluded


def _dataset_phrasing(modality: str, g: dict, typ: str, lc: LengthConstraint, seed: int) -> tuple[str, list[str]]:
    """The instruction as the build's own instruction writer phrases it (prompts/grounded), and the key
    points of exactly what it asks for (the objects it names)."""
    import random

    from acd.grounded.compose import Writer
    from acd.grounded.facts import Facts
    from acd.grounded.keypoints import key_points
    from acd.grounded.phrasing import load_phrasing

    ph = load_phrasing()
    q = Writer(ph, Facts(modality, g, ph.lexicon), random.Random(seed)).instruction(typ, lc)
    return q, key_points(modality, typ, g, q)


PHRASINGS = ("eval", "dataset")


def build_items(media_rows: Iterable[dict], seed: int = 0, phrasing: str = "eval") -> dict[str, dict[str, list[dict]]]:
    """media rows ({modality, media (file name), grounding (dict or JSON), width/height/duration_s}) ->
    {modality: {"content": [...], "style": [...]}}: one content and one style item per media, the type
    and the length constraint rotating through the taxonomy and synthetic_eval.yaml.

    phrasing "eval": instructions from synthetic_eval.yaml's fixed templates, worded unlike anything in
    training (tests whether a model follows a paraphrased control); "dataset": instructions written by the
    build's own instruction writer for the held-out media (the synthetic domain's test split proper)."""
    if phrasing not in PHRASINGS:
        raise ValueError(f"phrasing must be one of {PHRASINGS}, not {phrasing!r}")
    tax, spec = load_taxonomy(), _spec()
    out: dict[str, dict[str, list[dict]]] = {}
    counters: dict[str, int] = {}
    for row in media_rows:
        g = row["grounding"]
        g = json.loads(g) if isinstance(g, str) else g
        if not g:
            continue
        m = row["modality"]
        i = counters.get(m, 0)
        counters[m] = i + 1
        types = tax.types_for(m)
        for kind, control in (("content", "content"), ("style", "style")):
            pool = [t.name for t in types if t.control == control]
            if not pool:
                continue
            typ = pool[(i + seed) % len(pool)]
            if typ == "instance" and len(g.get("objects", [])) < 2:  # nothing left to describe once excluded
                typ = pool[(i + seed + 1) % len(pool)]
            lk = spec["length_keys"][(i + seed + (kind == "style")) % len(spec["length_keys"])]
            lc = LengthConstraint.from_key(lk)
            length = lc.sentence()
            if phrasing == "dataset":
                human, kps = _dataset_phrasing(m, g, typ, lc, seed * 1_000_003 + i * 2 + (kind == "style"))
            else:
                q, excluded = _fill(spec["instructions"][typ], m, g, i, spec)
                human, kps = (f"{q} {length}" if length else q), _derive_key_points(g, typ, excluded)
            item = {"id": len(out.get(m, {}).get(kind, [])), m: row["media"],
                    "conversations": [{"from": "human", "value": human},
                                      {"from": "gpt", "value": _reference_caption(kps)}]}
            if m == "audio":
                item["time_long"] = float(row.get("duration_s") or g.get("duration_s") or 0.0)
            else:
                item["width"], item["height"] = int(row.get("width") or 0), int(row.get("height") or 0)
            item["restriction"] = [tax.types[typ].release_name_for(m), length]
            if kind == "content":
                item["key_point"] = kps
            out.setdefault(m, {}).setdefault(kind, []).append(item)
    return out


def write_split(items: dict[str, dict[str, list[dict]]], out_dir: str | Path,
                media: dict[str, tuple[bytes, dict]] | None = None) -> Path:
    """Write ref_content.jsonl / ref_style.jsonl per modality (+ media files and the grounding sidecar)."""
    out = Path(out_dir)
    for m, kinds in items.items():
        d = out / m
        d.mkdir(parents=True, exist_ok=True)
        for kind, fname in (("content", "ref_content.jsonl"), ("style", "ref_style.jsonl")):
            rows = kinds.get(kind, [])
            (d / fname).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        if media:
            (d / "media").mkdir(exist_ok=True)
            side = []
            for name, (data, g) in media.items():
                if name in {r[m] for rs in kinds.values() for r in rs}:
                    (d / "media" / name).write_bytes(data)
                    side.append(json.dumps({"media": name, "grounding": g}) + "\n")
            (d / "grounding.jsonl").write_text("".join(side))
    return out


def from_dataset(dataset_dir: str | Path, out_dir: str | Path, split: str = "test", limit: int | None = None,
                 seed: int = 0, phrasing: str = "eval") -> Path:
    """The synthetic eval split from a built dataset's shards (media + grounding travel in the samples)."""
    import webdataset as wds

    from acd.acm.data import MEDIA_EXTS, shard_urls

    rows, media = [], {}
    counts: dict[str, int] = {}
    for s in wds.WebDataset(shard_urls(dataset_dir, split), shardshuffle=False, empty_check=False,
                               nodesplitter=lambda urls: urls).decode():
        meta = s["json"]
        m = meta["modality"]
        if limit and counts.get(m, 0) >= limit:
            continue
        ext = meta.get("ext") if meta.get("ext") in s else next((e for e in MEDIA_EXTS[m] if e in s), None)
        g = meta.get("grounding")
        g = json.loads(g) if isinstance(g, str) else g
        if ext is None or not g:
            continue
        counts[m] = counts.get(m, 0) + 1
        name = f"{meta['media_key']}.{ext}"
        rows.append({"modality": m, "media": name, "grounding": g, "width": meta.get("width"),
                     "height": meta.get("height"), "duration_s": meta.get("duration_s")})
        media[name] = (s[ext], g)
    if not rows:
        raise ValueError(f"no media with grounding in {dataset_dir}/shards/{split}")
    return write_split(build_items(rows, seed, phrasing), out_dir, media)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="acd.evaluation.synthetic_split")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--out", required=True)
    ap.add_argument("--limit", type=int, default=None, help="media per modality")
    ap.add_argument("--phrasing", choices=PHRASINGS, default="eval",
                    help="eval: synthetic_eval.yaml's own instruction templates (unseen wording); "
                         "dataset: the build's instruction writer (in-domain wording, held-out media)")
    a = ap.parse_args(argv)
    print(from_dataset(a.dataset, a.out, a.split, a.limit, phrasing=a.phrasing))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
