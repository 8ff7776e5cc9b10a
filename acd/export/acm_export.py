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
from itertools import groupby
from pathlib import Path
from typing import Any, Callable

import yaml

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


def _rows(con, splits: tuple[str, ...], batch_rows: int):
    """The exported splits' pairs with the media facts a line needs, in (modality, instruction_type,
    is_qcc, pair_id) order: one DuckDB query, streamed a batch at a time."""
    cur = con.cursor()
    try:
        reader = cur.sql(
            "select p.modality, p.instruction_type, p.is_qcc, p.pair_id, p.media_key, p.instruction, p.chosen, "
            "p.rejected, m.ext, m.width, m.height, m.duration_s from pairs_s p join media_s m using (media_key) "
            "where p.split in (select unnest($splits)) order by p.modality, p.instruction_type, p.is_qcc, p.pair_id",
            params={"splits": list(splits)}).to_arrow_reader(batch_rows)
        for b in reader:
            yield from b.to_pylist()
    finally:
        cur.close()


def write_acm(con, out_dir: Path, splits: tuple[str, ...] = ("train",), progress: Callable | None = None,
              batch_rows: int = 8192) -> dict[str, Any]:
    """Write the jsonl files and meta files; return {"files": [rel...], "counts": {modality: {kind: n}}}.

    Lines are ordered by pair_id in a file; a file is written line by line as its rows stream in.
    """
    tax = load_taxonomy()
    files: list[str] = []
    counts: dict[str, dict[str, int]] = {}
    total = con.execute("select count(*) from pairs_s where split in (select unnest($s))",
                        {"s": list(splits)}).fetchone()[0]
    done = 0
    metas: dict[str, dict[str, dict[str, Any]]] = {}
    for (modality, itype, qcc), group in groupby(_rows(con, splits, batch_rows),
                                                 key=lambda r: (r["modality"], r["instruction_type"], r["is_qcc"])):
        release_name = tax.types[itype].release_name_for(modality)  # video: appearance / position
        kind = "q-c-c" if qcc else "q-a-c"
        rel = f"acm/{modality}/{kind}/{release_name}.jsonl"
        n = [0]

        def produce(tmp, group=group, n=n, modality=modality, kind=kind, release_name=release_name):
            with open(tmp, "w", encoding="utf-8") as f:
                for i, r in enumerate(group):
                    f.write(json.dumps(_record(modality, kind, i, r, r, release_name), ensure_ascii=False) + "\n")
                    n[0] += 1

        write_via(out_dir / rel, produce)
        files.append(rel)
        counts.setdefault(modality, {}).setdefault(kind, 0)
        counts[modality][kind] += n[0]
        suffix = prompt_config()["meta_suffix"][kind]
        metas.setdefault(modality, {k: {} for k in KINDS})[kind][f"{suffix}_{release_name}.jsonl"] = {
            "root": f"{MEDIA_ROOT}/{modality}",
            "annotation": f"{modality}/{kind}/{release_name}.jsonl",
            "data_augment": False,
            "repeat_time": 1,
            "length": n[0],
        }
        done += n[0]
        if progress:
            progress("acm", done, total)
    for modality in sorted(metas):
        for kind, meta in metas[modality].items():
            if not meta:
                continue
            rel = f"acm/meta_{modality}_{prompt_config()['meta_suffix'][kind]}.json"
            text = json.dumps(dict(sorted(meta.items())), indent=4, ensure_ascii=False) + "\n"
            write_if_changed(out_dir / rel, text.encode("utf-8"))
            files.append(rel)
    if progress and total == 0:
        progress("acm", 0, 0)
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
