"""HF source: rows of a `datasets` dataset (a save_to_disk folder, a folder of data files, or a cached
dataset name), media read as raw bytes (decode=False), batched by row ranges in dataset order.

Config (recipe `source:`, the HFSource model; defaults are its fields):
    kind: hf
    path: data/my_ds                # save_to_disk dir | data dir / builder name for load_dataset
    name: null                      # optional dataset config name (load_dataset)
    data_files: null                # optional, as load_dataset's data_files
    split: train
    streaming: true                 # load_dataset(streaming=True) where possible; save_to_disk dirs are
                                    # memory-mapped anyway and read by row ranges
    image_column / video_column / audio_column: <column>   # default: columns whose feature is Image/Video/Audio
    caption_column: caption         # optional (str, or a list of columns); str or list-of-str values
    licence_column / licence        # optional
    root: path                      # where path-only cells may point (default: `path` when it is a folder)
    batch_size: 256
    limits: {...}                   # overrides of schemas/ingest.yaml

source_id = "<split>:<row>" (":<column>" appended when several media columns are configured).
Nothing downloads: HF_DATASETS_OFFLINE=1 in tests; a name must already be in the local cache.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from acd.media.errors import ProbeError
from acd.media.item import probe_bytes, read_file
from acd.media.safety import resolve_inside
from acd.media.sniff import ext_of
from acd.sources.base import IngestResult, source_section
from acd.sources.collector import Collector

_FEATURES = {"Image": "image", "Video": "video", "Audio": "audio"}


class HFSource:
    name = "hf"

    def __init__(self, config: Any, seed: int = 0):
        """`config`: the recipe's HFSource section (acd.recipe_model), or a mapping of one."""
        config = source_section("hf", config)
        self.path = config.path
        self.config_name = config.name
        self.data_files = config.data_files
        self.split = config.split
        self.streaming = config.streaming
        given = {"image": config.image_column, "video": config.video_column, "audio": config.audio_column}
        self.columns = {m: col for m, col in given.items() if col}
        # both spellings are valid; caption_column wins
        cc = config.caption_column if config.caption_column is not None else config.caption_columns
        self.caption_columns = [cc] if isinstance(cc, str) else list(cc or [])
        self.licence_column = config.licence_column
        self.licence = config.licence
        local = Path(os.path.expanduser(self.path))
        self.root = Path(config.root) if config.root else (local if local.is_dir() else None)
        self.batch_size = config.batch_size
        self.limits = config.limits
        self._ds = None
        self._n: int | None = None

    # -- loading --------------------------------------------------------------------------------------------
    def _load(self):
        if self._ds is not None:
            return self._ds
        import datasets

        local = Path(os.path.expanduser(self.path))
        if (local / "state.json").exists() or (local / "dataset_dict.json").exists():
            ds = datasets.load_from_disk(str(local))
            if isinstance(ds, datasets.DatasetDict):
                ds = ds[self.split]
        else:
            ds = datasets.load_dataset(self.path, self.config_name, data_files=self.data_files, split=self.split,
                                       streaming=self.streaming)
        if not self.columns:  # media columns by feature type
            for col, feat in (ds.features or {}).items():
                m = _FEATURES.get(type(feat).__name__)
                if m and m not in self.columns:
                    self.columns[m] = col
        if not self.columns:
            raise ValueError(f"hf source {self.path}: no image/video/audio column configured or detected")
        for m, col in self.columns.items():  # raw bytes, never the library's decoders (ours are the bounded ones)
            feat = (ds.features or {}).get(col)
            if type(feat).__name__ in _FEATURES:
                ds = ds.cast_column(col, type(feat)(decode=False))
        self._ds = ds
        return ds

    def __len__(self) -> int:
        if self._n is None:
            ds = self._load()
            if hasattr(ds, "__len__"):
                self._n = len(ds)
            else:  # streaming: count once, reading one light column when there is one
                light = self.caption_columns[:1] or list(self.columns.values())[:1]
                self._n = sum(1 for _ in ds.select_columns(light))
        return self._n

    def batches(self) -> list[str]:
        return [f"rows-{i:04d}" for i in range((len(self) + self.batch_size - 1) // self.batch_size)]

    def _rows(self, start: int, stop: int):
        ds = self._load()
        if hasattr(ds, "select"):
            part = ds.select(range(start, min(stop, len(ds))))
        else:
            part = ds.skip(start).take(stop - start)
        yield from enumerate(part, start=start)

    def read(self, batch: str, media_dir: Path) -> IngestResult:
        i = int(batch.rsplit("-", 1)[1])
        col = Collector(self.name, media_dir)
        multi = len(self.columns) > 1
        for idx, row in self._rows(i * self.batch_size, (i + 1) * self.batch_size):
            for modality, column in sorted(self.columns.items()):
                sid = f"{self.split}:{idx}" + (f":{column}" if multi else "")
                col.add(sid, lambda row=row, m=modality, c=column: self._probe(row.get(c), m, c),
                        licence=self._licence(row), existing_captions=self._captions(row))
        return col.result

    # -- one cell -------------------------------------------------------------------------------------------
    def _probe(self, cell: Any, modality: str, column: str):
        data, name = None, ""
        if isinstance(cell, dict):
            data, name = cell.get("bytes"), cell.get("path") or ""
        elif isinstance(cell, (bytes, bytearray)):
            data = bytes(cell)
        elif isinstance(cell, str):
            name = cell
        if data is None and not name:
            raise ProbeError("missing_field", f"column {column!r} is empty")
        if data is None:  # a path-only cell: a local file that must stay inside the root
            if self.root is None:
                raise ProbeError("unreadable", f"path-only cell {name!r} and no `root` configured")
            real = resolve_inside(self.root, name)
            data = read_file(real, ext_of(name), self.limits)
        return probe_bytes(data, ext_of(name), self.limits, expected_modality=modality)

    def _captions(self, row: dict) -> list[str] | None:
        out: list[str] = []
        for c in self.caption_columns:
            v = row.get(c)
            if isinstance(v, str) and v.strip():
                out.append(v.strip())
            elif isinstance(v, list):
                out.extend(s.strip() for s in v if isinstance(s, str) and s.strip())
        return out or None

    def _licence(self, row: dict) -> str | None:
        if self.licence_column and isinstance(row.get(self.licence_column), str):
            return row[self.licence_column]
        return self.licence
