"""`acd check`: the build's deterministic per-pair checks over any table of pairs (no Prefect, no run dir).

Input: a JSONL or Parquet file, a built dataset directory (its pairs/*.parquet), or a folder of InternVL
conversation files with meta_*.json (the official AnyCap release slice, or a dataset's acm/ export; see
acd.checks.conversations). Required columns: pair_id, modality, instruction, chosen, rejected. Optional:
instruction_type, length_constraint (and length_key, as a built dataset has), is_qcc, rejection_strategy,
grounding (the JSON the ingest parts' `grounding` column holds; a JSON object in a JSONL line is taken as
is), media_key (with --grounding-from, to look the grounding up in a run's ingest parts).

Defaults for a missing optional column: is_qcc false; no type, strategy or grounding; and the length
constraint read from the instruction itself with acd.checks.length's parser (the release's sentence forms),
so a table of real instructions is length-checked as the build checks its own.

Only acd.checks.rules.check_pair runs (every reason code it returns); the lot-level near-duplicate check and
the judge do not: they need a whole lot and a model, and say nothing about one pair's text.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from acd.errors import AcdError

REQUIRED = ("pair_id", "modality", "instruction", "chosen", "rejected")
OPTIONAL = ("instruction_type", "length_constraint", "length_key", "is_qcc", "rejection_strategy", "grounding",
            "media_key")
RESULT_SCHEMA = pa.schema([pa.field("pair_id", pa.string(), nullable=False),
                          pa.field("passed", pa.bool_(), nullable=False),
                          pa.field("failures", pa.list_(pa.string()), nullable=False)])
_TRUE, _FALSE = {"true", "1", "yes", "t", "y"}, {"false", "0", "no", "f", "n", ""}


class BadInput(AcdError):
    """The pairs cannot be read as a table of pairs; str() is the one line the user sees."""


def as_bool(v, column: str, pair_id) -> bool | None:
    """A JSON/Parquet truth value (true/false, 1/0, "yes"/"no"); None stays None."""
    if v is None or isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise BadInput(f"pair {pair_id}: column {column!r} is {v!r}, not true/false")


# ------------------------------------------------------------------------------------------------ reading
def _jsonl(path: Path):
    """Every line an object; nested values (a grounding object) kept as their JSON text. maximum_depth=1
    makes DuckDB type each top-level field JSON, and ->>'$' gives a string's value or an object's text."""
    import duckdb

    con = duckdb.connect()
    src = "read_json(?, format='newline_delimited', maximum_depth=1)"
    try:
        cols = con.sql(f"select * from {src} limit 0", params=[str(path)]).columns
        quoted = [c.replace('"', '""') for c in cols]
        sel = ", ".join(f'("{c}"->>\'$\') as "{c}"' for c in quoted)
        return con.sql(f"select {sel} from {src}", params=[str(path)]).to_arrow_table()
    except duckdb.Error as exc:
        raise BadInput(f"{path}: {_bad_line(path) or str(exc).splitlines()[0]}") from None
    finally:
        con.close()


def _bad_line(path: Path) -> str | None:
    """The first line that is not a JSON object, named by its number (DuckDB's message counts lines its own
    way); None when every line parses and there is at least one."""
    seen = False
    with open(path, encoding="utf-8", errors="replace") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            seen = True
            try:
                obj = json.loads(line)
            except ValueError as exc:
                return f"line {i} is not valid JSON ({exc})"
            if not isinstance(obj, dict):
                return f"line {i} is a JSON {type(obj).__name__}, not an object"
    return None if seen else "no pairs: the file has no JSON lines"


def _parquet(paths: list[Path]) -> pa.Table:
    import duckdb

    con = duckdb.connect()
    try:
        return con.sql("select * from read_parquet(?, union_by_name=true)",
                       params=[[str(p) for p in paths]]).to_arrow_table()
    except duckdb.Error as exc:
        raise BadInput(f"{paths[0] if len(paths) == 1 else paths[0].parent}: not readable Parquet "
                       f"({str(exc).splitlines()[0]})") from None
    finally:
        con.close()


def read_pairs(path: str | Path) -> pa.Table:
    """The pairs at `path` as an Arrow table with at least the REQUIRED columns (BadInput otherwise)."""
    from acd.checks.conversations import is_conversation_folder, read_conversations

    path = Path(path)
    if not path.exists():
        raise BadInput(f"{path}: no such file or directory")
    if path.is_dir():
        parts = sorted((path / "pairs").glob("*.parquet"))
        if parts:
            table = _parquet(parts)
        elif is_conversation_folder(path):
            try:
                conv = read_conversations(path)
            except ValueError as exc:
                raise BadInput(str(exc)) from None
            table = pa.Table.from_pylist(conv.rows) if conv.rows else pa.table({c: pa.array([], pa.string())
                                                                                for c in REQUIRED})
        else:
            raise BadInput(f"{path}: a directory without pairs/*.parquet or meta_*.json conversation files")
    elif path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        table = _jsonl(path)
    elif path.suffix.lower() == ".parquet":
        table = _parquet([path])
    else:
        raise BadInput(f"{path}: expected .jsonl or .parquet (or a dataset directory)")
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing and path.is_file() and path.suffix.lower() != ".parquet":
        bad = _bad_line(path)  # lines that are no objects read as one "json" column: name the line instead
        if bad:
            raise BadInput(f"{path}: {bad}")
    if missing:
        raise BadInput(f"{path}: missing required column(s) {', '.join(missing)} "
                       f"(has {', '.join(table.column_names) or 'none'})")
    ids = table.column("pair_id")
    if ids.null_count:
        raise BadInput(f"{path}: row {ids.to_pylist().index(None) + 1} has no pair_id")
    return table


def groundings_from_run(run_dir: str | Path, media_keys: list[str]) -> dict[str, str | None]:
    """media_key -> grounding JSON from a run's ingest parts (DuckDB over <run>/ingest/*/part-*.parquet)."""
    import duckdb

    parts = sorted(Path(run_dir).glob("ingest/*/part-*.parquet"))
    if not parts:
        raise BadInput(f"{run_dir}: no ingest parts (ingest/*/part-*.parquet) to take groundings from")
    con = duckdb.connect()
    try:
        keys = pa.table({"media_key": pa.array(sorted(set(media_keys)), pa.string())})
        con.register("keys", keys)
        rows = con.sql("select i.media_key, i.grounding from read_parquet(?, union_by_name=true) i "
                       "join keys using (media_key)", params=[[str(p) for p in parts]]).fetchall()
    finally:
        con.close()
    return dict(rows)


# ----------------------------------------------------------------------------------------------- checking
def check_rows(table: pa.Table, groundings: dict[str, str | None] | None = None) -> pa.Table:
    """RESULT_SCHEMA: pair_id, passed, failures (check_pair's reason codes, [] when clean) per row.

    groundings (media_key -> JSON) fills in a grounding where the table has none of its own."""
    from acd.checks.length import parse_constraint
    from acd.checks.rules import check_pair

    n = table.num_rows
    col = {c: table.column(c).to_pylist() if c in table.column_names else [None] * n for c in REQUIRED + OPTIONAL}
    has_length = "length_constraint" in table.column_names or "length_key" in table.column_names
    out_ids, out_passed, out_fail = [], [], []
    for i in range(n):
        pid = str(col["pair_id"][i])
        instruction = col["instruction"][i]
        if has_length:
            lc, lk = col["length_constraint"][i], col["length_key"][i] or "none"
        else:
            # No length column: the constraint is whatever length sentence the instruction states.
            found = parse_constraint(instruction or "")
            lc, lk = (found.phrase if found else None), "none"
        grounding = col["grounding"][i]
        if grounding is None and groundings and col["media_key"][i] is not None:
            grounding = groundings.get(col["media_key"][i])
        if isinstance(grounding, (dict, list)):
            grounding = json.dumps(grounding, sort_keys=True)
        fails = check_pair(instruction, col["chosen"][i], col["rejected"][i],
                           bool(as_bool(col["is_qcc"][i], "is_qcc", pid)), lk, lc,
                           modality=col["modality"][i], grounding=grounding or None,
                           instruction_type=col["instruction_type"][i],
                           rejection_strategy=col["rejection_strategy"][i])
        out_ids.append(pid)
        out_passed.append(not fails)
        out_fail.append(list(fails))
    return pa.table({"pair_id": out_ids, "passed": out_passed, "failures": out_fail}, schema=RESULT_SCHEMA)


@dataclass
class Summary:
    pairs: int
    passed: int
    reasons: list[tuple[str, int]]  # (reason code, pairs failing it), commonest first

    @property
    def pass_rate(self) -> float:
        return self.passed / self.pairs if self.pairs else 1.0

    def rows(self) -> list[dict]:
        """reason, count, share (of all pairs; a pair can fail several reasons)."""
        return [{"reason": r, "count": k, "share": round(k / self.pairs, 4) if self.pairs else 0.0}
                for r, k in self.reasons]

    def lines(self) -> list[str]:
        out = [f"pairs: {self.pairs}", f"passed: {self.passed} ({100 * self.pass_rate:.1f}%)"]
        if self.reasons:
            width = max(len(r) for r, _ in self.reasons)
            out.append(f"{'reason':<{width}}  {'count':>6}  share")
            out += [f"{r['reason']:<{width}}  {r['count']:>6}  {100 * r['share']:.1f}%" for r in self.rows()]
        else:
            out.append("no check failed")
        return out


def summarize(result: pa.Table) -> Summary:
    failures = result.column("failures").to_pylist()
    counts = Counter(code for f in failures for code in set(f))
    return Summary(pairs=result.num_rows, passed=sum(result.column("passed").to_pylist()),
                   reasons=sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def write_result(result: pa.Table, out: str | Path) -> Path:
    """JSONL, or Parquet when `out` ends in .parquet; written to a temp file and renamed."""
    from acd.atomicio import write_text, write_via

    out = Path(out)
    if out.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        return write_via(out, lambda tmp: pq.write_table(result, tmp))
    if out.suffix.lower() not in (".jsonl", ".json", ".ndjson"):
        raise BadInput(f"{out}: the result must end in .jsonl or .parquet")
    write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in result.to_pylist()))
    return out


def check_path(pairs: str | Path, grounding_from: str | Path | None = None) -> pa.Table:
    table = read_pairs(pairs)
    groundings = None
    if grounding_from is not None:
        if "media_key" not in table.column_names:
            raise BadInput(f"{pairs}: --grounding-from needs a media_key column to join on")
        groundings = groundings_from_run(grounding_from, [k for k in table.column("media_key").to_pylist() if k])
    return check_rows(table, groundings)
