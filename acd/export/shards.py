"""shards/<split>/<modality>-NNNNNN.tar: WebDataset tars, one sample per media item and split.

A sample is `<media_key>.<ext>` (the media bytes, once) plus `<media_key>.json` (probe facts and all of
that item's pairs in the split, sorted by pair_id). Items go in (modality, media_key) order and a shard is
closed before the item that would push it past `target_bytes`, so an item is never split and the cut is
a pure function of the inputs.

Byte-determinism: webdataset's TarWriter stamps `time.time()` as mtime unless given one, and its default
uname/gname are "bigdata"; we pass a fixed mtime, owner names and mode (uid/gid stay 0 from TarInfo), and
USTAR format (no pax headers with atime/ctime). Two runs give identical tars.

Idempotency: a shard's content is fully determined by its members' keys (= sha256 of the media bytes),
extensions, sizes and json bytes. That fingerprint is kept in the export state; a shard whose fingerprint
and on-disk size/mtime match is not rewritten and its media are not even read.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pyarrow as pa
import webdataset as wds

from acd.export.fsutil import HashingWriter, tmp_path
from acd.records import dumps

TAR_FORMAT_VERSION = "acd-wds-1"  # bump when the sample layout changes: invalidates every shard fingerprint
TAR_MTIME = 0
TAR_OWNER = "acd"
BLOCK = 512
RECORD = 20 * BLOCK  # tarfile's stream mode pads the archive to whole records

# Pair columns carried into the sample json (the text a consumer needs next to the media).
SAMPLE_PAIR_FIELDS = (
    "pair_id", "instruction_type", "control", "length_key", "length_constraint", "instruction", "chosen",
    "rejected", "rejection_strategy", "is_qcc",
)
# Media columns carried into the sample json; `uri` is left out on purpose (it is a run-dir path).
SAMPLE_MEDIA_FIELDS = (
    "media_key", "modality", "source", "source_id", "ext", "mime", "bytes", "width", "height", "duration_s",
    "fps", "num_frames", "sample_rate", "channels", "licence",
)
JSON_MEDIA_FIELDS = ("grounding", "existing_captions")  # stored as JSON strings; embedded as objects


def member_size(n: int) -> int:
    return BLOCK + -(-n // BLOCK) * BLOCK


def tar_size(member_sizes: list[int]) -> int:
    raw = sum(member_size(n) for n in member_sizes) + 2 * BLOCK
    return -(-raw // RECORD) * RECORD


@dataclass
class Item:
    key: str
    ext: str
    media_bytes: int
    uri: str
    json: bytes

    @property
    def tar_bytes(self) -> int:
        return member_size(self.media_bytes) + member_size(len(self.json))


@dataclass
class Shard:
    rel: str
    split: str
    modality: str
    items: list[Item] = field(default_factory=list)

    def fingerprint(self) -> str:
        h = hashlib.sha256(TAR_FORMAT_VERSION.encode())
        for it in self.items:
            h.update(f"\0{it.key}\0{it.ext}\0{it.media_bytes}\0".encode())
            h.update(hashlib.sha256(it.json).digest())
        return h.hexdigest()


def sample_json(media_row: dict[str, Any], pair_rows: list[dict[str, Any]], split: str) -> bytes:
    import json

    obj = {k: media_row.get(k) for k in SAMPLE_MEDIA_FIELDS}
    for k in JSON_MEDIA_FIELDS:
        v = media_row.get(k)
        obj[k] = json.loads(v) if v else None
    obj["split"] = split
    obj["pairs"] = [{k: p[k] for k in SAMPLE_PAIR_FIELDS} for p in sorted(pair_rows, key=lambda p: p["pair_id"])]
    return dumps(obj).encode("utf-8")


def iter_items(pairs: Iterable[pa.Table], media_rows: Iterator[dict[str, Any]], split: str, modality: str
               ) -> Iterator[Item]:
    """Items of one split and modality. `pairs` is a stream of batches sorted by (media_key, pair_id) and
    `media_rows` the media rows of the same keys sorted by media_key: a merge, so only one batch of pairs
    and one item's pairs are ever Python objects at once."""
    key, rows = None, []

    def item() -> Item:
        m = next(media_rows, None)
        if m is None or m["media_key"] != key:
            raise ValueError(f"pairs reference media_key {key} with no media row")
        if m["modality"] != modality:
            raise ValueError(f"media {key} is {m['modality']!r} but its pairs say {modality!r}")
        return Item(key=key, ext=m["ext"], media_bytes=int(m["bytes"]), uri=m["uri"],
                    json=sample_json(m, rows, split))

    for t in pairs:
        for k, r in zip(t.column("media_key").to_pylist(), t.select(list(SAMPLE_PAIR_FIELDS)).to_pylist()):
            if k != key:
                if rows:
                    yield item()
                key, rows = k, []
            rows.append(r)
    if rows:
        yield item()


def plan_shards(items: Iterator[Item], split: str, modality: str, target_bytes: int) -> Iterator[Shard]:
    """Cut a stream of items into shards (greedy, in order); a single oversize item gets a shard alone."""
    idx = 0
    cur = Shard(rel=f"shards/{split}/{modality}-{idx:06d}.tar", split=split, modality=modality)
    used = 2 * BLOCK
    for it in items:
        if cur.items and used + it.tar_bytes > target_bytes - RECORD:
            yield cur
            idx += 1
            cur = Shard(rel=f"shards/{split}/{modality}-{idx:06d}.tar", split=split, modality=modality)
            used = 2 * BLOCK
        cur.items.append(it)
        used += it.tar_bytes
    if cur.items:
        yield cur


def write_shard(shard: Shard, out_dir: Path, run_dir: Path) -> tuple[str, int]:
    """Write one tar atomically; verify each media file against its key on the way. Returns (sha256, size)."""
    path = out_dir / shard.rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(path)
    try:
        with open(tmp, "wb") as f:
            hw = HashingWriter(f)
            tw = wds.TarWriter(hw, user=TAR_OWNER, group=TAR_OWNER, mode=0o444, mtime=TAR_MTIME,
                               encoder=False, format="USTAR_FORMAT")
            for it in shard.items:
                data = (run_dir / it.uri).read_bytes()  # one item in memory at a time
                if len(data) != it.media_bytes or hashlib.sha256(data).hexdigest() != it.key:
                    raise ValueError(f"media {it.key} at {run_dir / it.uri}: bytes do not match its key/size "
                                     "(the run directory's media store is corrupt)")
                tw.write({"__key__": it.key, it.ext: data, "json": it.json})
            tw.close()
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return hw.sha.hexdigest(), hw.size
    finally:
        if tmp.exists():
            tmp.unlink()


def _media_rows(con, split: str, modality: str, batch_rows: int) -> Iterator[dict[str, Any]]:
    """The media rows of one split and modality's items, in media_key order (DuckDB, a batch at a time)."""
    cur = con.cursor()
    try:
        reader = cur.sql(
            "select * from media_s where media_key in "
            "(select media_key from pairs_s where split = $split and modality = $modality) order by media_key",
            params={"split": split, "modality": modality}).to_arrow_reader(batch_rows)
        for b in reader:
            yield from b.to_pylist()
    finally:
        cur.close()


def write_shards(con, src, out_dir: Path, run_dir: Path, target_bytes: int, previous: dict[str, dict],
                 progress: Callable | None = None) -> dict[str, dict]:
    """Write all shards from the sorted pairs (acd.export.source.Sorted); return
    {rel: {"fingerprint", "sha256", "bytes", "items", "split", "modality"}}.

    `previous` is the same mapping from the last export (the state file); a shard whose fingerprint matches
    and whose file still has the recorded size and mtime is kept as is.
    """
    from acd.export import source

    total_items = con.execute("select count(*) from (select distinct split, modality, media_key from pairs_s)").fetchone()[0]
    out: dict[str, dict] = {}
    done = 0
    cols = ["split", "modality", "media_key", *SAMPLE_PAIR_FIELDS]
    for split, by_split in source.runs_of(source.scan(src, columns=cols), "split"):
        for modality, sub in source.runs_of(by_split, "modality"):  # sorted by (modality, media_key, pair_id)
            items = iter_items(sub, _media_rows(con, split, modality, src.batch_rows), split, modality)
            for shard in plan_shards(items, split, modality, target_bytes):
                fp = shard.fingerprint()
                prev = previous.get(shard.rel)
                path = out_dir / shard.rel
                info = None
                if prev and prev.get("fingerprint") == fp and path.exists():
                    st = path.stat()
                    if st.st_size == prev.get("bytes") and st.st_mtime_ns == prev.get("mtime_ns"):
                        info = dict(prev)
                if info is None:
                    sha, size = write_shard(shard, out_dir, run_dir)
                    info = {"fingerprint": fp, "sha256": sha, "bytes": size, "mtime_ns": path.stat().st_mtime_ns}
                info.update(items=len(shard.items), split=split, modality=modality)
                out[shard.rel] = info
                done += len(shard.items)
                if progress:
                    progress("shards", done, total_items)
    return out
