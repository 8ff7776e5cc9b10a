"""Manifest source: a JSONL / CSV / Parquet table of media paths or URLs, with optional captions.

Config (recipe `source:`, the ManifestSource model; defaults are its fields):
    kind: manifest
    path: data/manifest.jsonl       # .jsonl | .csv | .parquet
    root: data/                     # files must resolve inside it (default: the manifest's folder)
    path_column: path               # default: `path`, else `url`
    modality_column: modality       # optional: image|video|audio, checked against the bytes
    caption_columns: [caption]      # optional; default: `caption` / `captions` when present (str or list)
    licence_column: licence         # optional; default `licence` / `license` when present
    licence: cc-by-4.0              # optional fallback for every row
    allow_http: false               # http(s) rows: fetched with httpx only when true (else fetch_disabled)
    http_timeout_s: 20
    batch_size: 256                 # rows per batch
    limits: {...}                   # overrides of schemas/ingest.yaml

Relative paths are relative to the manifest's folder; file:// URLs are local paths. Row numbers in
source_id/detail are 1-based: the line for JSONL/CSV (where the row ends), the row index for Parquet (a
row group that does not read is one corrupt_manifest row named by its row range; a Parquet file that does
not open at all is one row named by the file). A UTF-8 BOM is skipped in JSONL as in CSV; text that is not
valid Unicode (bad bytes, or a lone surrogate escape such as "\\udce9" in JSON) makes its row not_utf8.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from acd.media.errors import ProbeError
from acd.media.item import byte_cap, probe_bytes, read_file
from acd.media.safety import resolve_inside
from acd.media.sniff import EXTENSIONS, SNIFF_BYTES, ext_of
from acd.sources.base import IngestResult, source_section
from acd.sources.collector import Collector

MODALITIES = ("image", "video", "audio")


class ManifestSource:
    name = "manifest"

    def __init__(self, config: Any, seed: int = 0):
        """`config`: the recipe's ManifestSource section (acd.recipe_model), or a mapping of one."""
        config = source_section("manifest", config)
        self.path = Path(os.path.expanduser(config.path))
        self.base = self.path.parent
        self.root = Path(os.path.expanduser(config.root)) if config.root else self.base
        self.path_column = config.path_column
        self.modality_column = config.modality_column
        # both spellings are valid; caption_columns wins
        cc = config.caption_columns if config.caption_columns is not None else config.caption_column
        self.caption_columns = [cc] if isinstance(cc, str) else cc
        self.licence_column = config.licence_column
        self.licence = config.licence
        self.allow_http = config.allow_http
        self.http_timeout_s = float(config.http_timeout_s)
        self.batch_size = config.batch_size
        self.limits = config.limits
        self._rows: list[tuple[int, dict | None, str | None]] | None = None

    # -- parsing: each row is (row number, mapping or None, error reason or None) ----------------------------
    def rows(self) -> list[tuple[int, dict | None, str | None]]:
        if self._rows is None:
            suffix = self.path.suffix.lower()
            if suffix in (".jsonl", ".ndjson"):
                self._rows = list(_jsonl_rows(self.path.read_bytes()))
            elif suffix == ".csv":
                self._rows = list(_csv_rows(self.path.read_bytes()))
            elif suffix == ".parquet":
                self._rows = list(_parquet_rows(self.path))
            else:
                raise ValueError(f"manifest {self.path}: expected .jsonl, .csv or .parquet")
        return self._rows

    def batches(self) -> list[str]:
        n = len(self.rows())
        return [f"rows-{i:04d}" for i in range((n + self.batch_size - 1) // self.batch_size)]

    def read(self, batch: str, media_dir: Path) -> IngestResult:
        i = int(batch.rsplit("-", 1)[1])
        col = Collector(self.name, media_dir)
        for num, row, error in self.rows()[i * self.batch_size:(i + 1) * self.batch_size]:
            sid = self.path.name if num is None else f"{self.path.name}:{num}"
            if error is not None:
                where = "" if num is None else f"{'rows' if isinstance(num, str) else 'row'} {num}: "
                col.bad(sid, error[0], where + error[1])
                continue
            ref = self._ref(row)
            if ref is None:
                want = self.path_column or "path' or 'url"
                col.bad(sid, "missing_field", f"row {num}: no '{want}' value")
                continue
            sid = f"{sid}:{ref}"
            col.add(sid, lambda row=row, ref=ref: self._probe(row, ref),
                    licence=self._licence(row), existing_captions=self._captions(row))
        return col.result

    # -- one row ------------------------------------------------------------------------------------------
    def _ref(self, row: dict) -> str | None:
        cols = [self.path_column] if self.path_column else ["path", "url"]
        for c in cols:
            v = row.get(c)
            if isinstance(v, str) and v.strip():
                return v.strip()
        return None

    def _captions(self, row: dict) -> list[str] | None:
        cols = self.caption_columns if self.caption_columns is not None else [c for c in ("caption", "captions") if c in row]
        out: list[str] = []
        for c in cols:
            v = row.get(c)
            if isinstance(v, str) and v.strip():
                out.append(v.strip())
            elif isinstance(v, list):
                out.extend(s.strip() for s in v if isinstance(s, str) and s.strip())
        return out or None

    def _licence(self, row: dict) -> str | None:
        cols = [self.licence_column] if self.licence_column else ["licence", "license"]
        for c in cols:
            if isinstance(row.get(c), str) and row[c].strip():
                return row[c].strip()
        return self.licence

    def _probe(self, row: dict, ref: str):
        expected = None
        if self.modality_column:
            expected = row.get(self.modality_column) or None
        elif isinstance(row.get("modality"), str):
            expected = row["modality"]
        if expected is not None and expected not in MODALITIES:
            raise ProbeError("malformed_row", f"modality {expected!r} is not one of {MODALITIES}")
        scheme = urlparse(ref).scheme.lower() if "://" in ref else ""
        if scheme in ("http", "https"):
            data = self._fetch(ref)
            return probe_bytes(data, ext_of(urlparse(ref).path), self.limits, expected)
        if scheme == "file":
            u = urlparse(ref)
            if u.netloc not in ("", "localhost"):
                raise ProbeError("escapes_root", f"file URL on another host {u.netloc!r}")
            local = url2pathname(unquote(u.path))
        elif scheme:
            raise ProbeError("unsupported_type", f"URL scheme {scheme!r} is not supported (file, http, https)")
        else:
            local = ref
        real = resolve_inside(self.root, local, base=self.base)  # before any open
        data = read_file(real, ext_of(local), self.limits)
        return probe_bytes(data, ext_of(local), self.limits, expected)

    def _fetch(self, url: str) -> bytes:
        if not self.allow_http:
            raise ProbeError("fetch_disabled", f"{url}: set allow_http: true to fetch http(s) rows")
        import httpx

        # Buffered only up to the cap of the modality the URL's extension (then its first bytes) say, not the
        # largest cap: a .jpg URL stops at max_bytes.image.
        name_ext = ext_of(urlparse(url).path)
        known = EXTENSIONS.get(name_ext)
        caps = {m: int(v) for m, v in self.limits.max_bytes}
        cap = caps[known[0]] if known else max(caps.values())
        try:
            with httpx.Client(timeout=self.http_timeout_s, follow_redirects=True) as client:
                with client.stream("GET", url) as resp:
                    resp.raise_for_status()
                    declared = resp.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > cap:
                        raise ProbeError("too_large", f"{url}: Content-Length {declared} > cap {cap}")
                    buf, capped = bytearray(), False
                    for chunk in resp.iter_bytes():
                        buf += chunk
                        if not capped and len(buf) >= SNIFF_BYTES:
                            cap, capped = byte_cap(name_ext, bytes(buf[:SNIFF_BYTES]), self.limits), True
                        if len(buf) > cap:
                            raise ProbeError("too_large", f"{url}: more than {cap} bytes")
                    return bytes(buf)
        except ProbeError:
            raise
        except Exception as exc:  # httpx.HTTPError and friends: the row is quarantined, the run goes on
            raise ProbeError("fetch_failed", f"{url}: {type(exc).__name__}: {exc}") from None


def _jsonl_rows(raw: bytes):
    raw = raw.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 BOM is an encoding mark, not part of row 1 (as in CSV)
    for num, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue  # blank lines are not rows
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield num, None, ("not_utf8", f"byte {exc.start}: {exc.reason}")
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            yield num, None, ("malformed_row", f"bad JSON: {exc.msg} at column {exc.colno}")
            continue
        except RecursionError:
            yield num, None, ("malformed_row", "bad JSON: nested too deeply")
            continue
        if not isinstance(obj, dict):
            yield num, None, ("malformed_row", f"a JSON {type(obj).__name__}, not an object")
            continue
        bad = _surrogate_field(obj)
        if bad is not None:  # JSON's \\udXXX escapes can spell lone surrogates: valid JSON, not valid Unicode
            yield num, None, ("not_utf8", f"field {bad!r} holds a lone surrogate escape (not valid Unicode)")
            continue
        yield num, obj, None


def _surrogate_field(obj: dict) -> str | None:
    """The first key (escaped for display) whose name or value holds a lone surrogate, else None."""
    def bad(v, depth=0) -> bool:
        if isinstance(v, str):
            return _has_surrogate(v, any_surrogate=True)
        if depth < 32 and isinstance(v, list):
            return any(bad(x, depth + 1) for x in v)
        if depth < 32 and isinstance(v, dict):
            return any(bad(k, depth + 1) or bad(x, depth + 1) for k, x in v.items())
        return False

    for k, v in obj.items():
        if bad(k) or bad(v):
            return k.encode("utf-8", "backslashreplace").decode("utf-8")
    return None


@contextlib.contextmanager
def _csv_field_limit(n: int):
    """csv's field limit (131,072 by default) is process-wide; no field can be longer than the file, so lift
    it to that for this parse only."""
    old = csv.field_size_limit()
    csv.field_size_limit(max(old, n))
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _csv_rows(raw: bytes):
    # Decode with surrogateescape so one bad row cannot spoil the file; its fields then carry lone surrogates,
    # which is how that row (and only it) is found to be not UTF-8. Quoted newlines stay CSV's business.
    text = raw.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    with _csv_field_limit(len(text) + 1):
        for row in reader:
            num = reader.line_num
            values = [v for v in row.values() if isinstance(v, str)] + [k for k in row if isinstance(k, str)]
            if any(_has_surrogate(v) for v in values):
                yield num, None, ("not_utf8", "a field is not valid UTF-8")
                continue
            if None in row:
                yield num, None, ("malformed_row", "more fields than the header")
                continue
            yield num, {k: (v if v != "" else None) for k, v in row.items()}, None


def _has_surrogate(s: str, any_surrogate: bool = False) -> bool:
    lo = "\ud800" if any_surrogate else "\udc80"  # surrogateescape only makes \udc80-\udcff
    return any(lo <= ch <= "\udfff" for ch in s)


def _parquet_rows(path: Path):
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        groups = [pf.metadata.row_group(g).num_rows for g in range(pf.metadata.num_row_groups)]
    except Exception as exc:  # ArrowInvalid, OSError ...: no footer, so no rows to name
        yield None, None, ("corrupt_manifest", f"not a readable Parquet file: {type(exc).__name__}: {exc}")
        return
    num = 0
    for g, n in enumerate(groups):
        try:
            table = pf.read_row_group(g)
            rows = table.to_pylist()
        except Exception as exc:
            if n:
                yield f"{num + 1}-{num + n}", None, (
                    "corrupt_manifest", f"row group {g} does not read: {type(exc).__name__}: {exc}")
            num += n
            continue
        for row in rows:
            num += 1
            bad = None
            for k, v in list(row.items()):
                if isinstance(v, bytes):  # binary columns: text must be UTF-8 like everywhere else
                    try:
                        row[k] = v.decode("utf-8")
                    except UnicodeDecodeError:
                        bad = k
            if bad is not None:
                yield num, None, ("not_utf8", f"column {bad!r} is not valid UTF-8")
            else:
                yield num, row, None
