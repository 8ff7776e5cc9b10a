"""acm/: the ACM training export in the official release's InternVL conversation format.

    acm/<modality>/<kind>/<release_name>.jsonl     kind in q-a-c (a = rejected) | q-c-c (a = chosen)
    acm/meta_<modality>_qac.json, acm/meta_<modality>_qcc.json

Paths in the meta files are relative to the acm/ directory (the release's were absolute paths on its
authors' cluster): "annotation" names the jsonl, "root" = media/<modality>, the folder a trainer reads
media from. Media live only once, in the WebDataset shards; `extract_media(out_dir)` unpacks them into
acm/media/<modality>/<media_key>.<ext> (skipped by the manifest and the Hub upload) when training needs
plain files. Only the splits in recipe export.acm_splits (default: train) are exported: the test split is
never trained on.
"""
from __future__ import annotations

import json
import tarfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.compute as pc
import yaml

from acd.export.tables import runs
from acd.export.fsutil import write_if_changed, write_via
from acd.paths import EXPORT_TEMPLATES_DIR
from acd.taxonomy import load_taxonomy

TEMPLATES_FILE = EXPORT_TEMPLATES_DIR / "acm_prompts.yaml"
KINDS = ("q-a-c", "q-c-c")
MEDIA_ROOT = "media"  # relative to acm/


@lru_cache(maxsize=1)
def prompt_config() -> dict[str, Any]:
    return yaml.safe_load(TEMPLATES_FILE.read_text())


def human_turn(modality: str, kind: str, q: str, a: str) -> str:
    tpl = prompt_config()["templates"][modality][kind]
    # str.replace, not format: captions may contain braces.
    return tpl.replace("{q}", q).replace("{a}", a)


def _record(modality: str, kind: str, idx: int, row: dict[str, Any], media: dict[str, Any], release_name: str) -> dict:
    fname = f"{row['media_key']}.{media['ext']}"
    conv = [
        {"from": "human", "value": human_turn(modality, kind, row["instruction"], row["rejected"])},
        {"from": "gpt", "value": row["chosen"]},
    ]
    # Key order as in the release's files for that modality (json keeps insertion order).
    rec: dict[str, Any] = {"id": idx, modality: fname, "conversations": conv}
    if modality == "image":
        rec["width"], rec["height"] = media.get("width"), media.get("height")
    elif modality == "audio":
        rec["time_long"] = media.get("duration_s")
        rec["restriction"] = [release_name]
    rec["pair_id"] = row["pair_id"]  # not in the release; lets a trainer trace a line back to its pair
    return rec


def write_acm(pairs_by_split: dict[str, pa.Table], media_by_key: dict[str, dict[str, Any]], out_dir: Path,
              splits: tuple[str, ...] = ("train",), progress: Callable | None = None) -> dict[str, Any]:
    """Write the jsonl files and meta files; return {"files": [rel...], "counts": {modality: {kind: n}}}.

    Each split's table is sorted by (modality, media_key, pair_id); lines are ordered by pair_id in a file.
    """
    tax = load_taxonomy()
    cols = ["pair_id", "media_key", "instruction", "chosen", "rejected", "is_qcc", "instruction_type"]
    files: list[str] = []
    counts: dict[str, dict[str, int]] = {}
    # Zero-copy: per modality, the slices of the exported splits (no filtered copy of the whole table).
    by_modality: dict[str, list[pa.Table]] = {}
    for split in sorted(set(splits) & set(pairs_by_split)):
        t = pairs_by_split[split]
        for modality, off, n in runs(t, "modality"):
            by_modality.setdefault(modality, []).append(t.slice(off, n).select(cols))
    total, done = sum(x.num_rows for v in by_modality.values() for x in v), 0
    for modality in sorted(by_modality):
        tm = pa.concat_tables(by_modality[modality])
        metas: dict[str, dict[str, Any]] = {k: {} for k in KINDS}
        for itype in sorted(set(tm.column("instruction_type").to_pylist())):
            release_name = tax.types[itype].release_name_for(modality)  # video: appearance / position
            # One type's rows as Python objects at a time keeps memory bounded at the 300k scale.
            rows = tm.filter(pc.equal(tm.column("instruction_type"), itype)).select(cols).to_pylist()
            rows.sort(key=lambda r: r["pair_id"])
            for kind in KINDS:
                want_qcc = kind == "q-c-c"
                sel = [r for r in rows if bool(r["is_qcc"]) == want_qcc]
                if not sel:
                    continue
                rel = f"acm/{modality}/{kind}/{release_name}.jsonl"
                body = "".join(
                    json.dumps(_record(modality, kind, i, r, media_by_key[r["media_key"]], release_name),
                               ensure_ascii=False) + "\n"
                    for i, r in enumerate(sel)
                )
                write_if_changed(out_dir / rel, body.encode("utf-8"))
                files.append(rel)
                counts.setdefault(modality, {}).setdefault(kind, 0)
                counts[modality][kind] += len(sel)
                suffix = prompt_config()["meta_suffix"][kind]
                metas[kind][f"{suffix}_{release_name}.jsonl"] = {
                    "root": f"{MEDIA_ROOT}/{modality}",
                    "annotation": f"{modality}/{kind}/{release_name}.jsonl",
                    "data_augment": False,
                    "repeat_time": 1,
                    "length": len(sel),
                }
            done += len(rows)
            if progress:
                progress("acm", done, total)
        for kind, meta in metas.items():
            if not meta:
                continue
            rel = f"acm/meta_{modality}_{prompt_config()['meta_suffix'][kind]}.json"
            text = json.dumps(dict(sorted(meta.items())), indent=4, ensure_ascii=False) + "\n"
            write_if_changed(out_dir / rel, text.encode("utf-8"))
            files.append(rel)
    return {"files": files, "counts": counts}


def extract_media(out_dir: str | Path, dest: str | Path | None = None, splits: tuple[str, ...] = ("train",)) -> int:
    """Unpack the media of the given splits' shards to dest/<modality>/<media_key>.<ext> (default
    <out>/acm/media, the meta files' root). Files already there with the right size are skipped.
    Returns the number of media files written."""
    out_dir = Path(out_dir)
    dest = Path(dest) if dest else out_dir / "acm" / MEDIA_ROOT
    written = 0
    for split in splits:
        for shard in sorted((out_dir / "shards" / split).glob("*.tar")):
            modality = shard.name.rsplit("-", 1)[0]
            with tarfile.open(shard, "r") as tf:
                for m in tf:
                    if not m.isfile() or m.name.endswith(".json"):
                        continue
                    target = dest / modality / Path(m.name).name
                    if target.exists() and target.stat().st_size == m.size:
                        continue
                    def copy(tmp, m=m):
                        with tf.extractfile(m) as src, open(tmp, "wb") as f:
                            while chunk := src.read(1 << 20):
                                f.write(chunk)

                    write_via(target, copy)
                    written += 1
    return written
