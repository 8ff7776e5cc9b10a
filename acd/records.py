"""Data contracts: the Arrow schemas every stage reads and writes, defined once.

JSON Schema copies are exported to schemas/*.schema.json by `acd schemas` (and checked by a test) so
tools outside Python can validate rows too. Nested, free-form facts (grounding, generation parameters)
travel as JSON strings so the Parquet stays flat and `datasets` loads it without a feature spec.
"""
from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

MEDIA_SCHEMA = pa.schema(
    [
        pa.field("media_key", pa.string(), nullable=False),  # sha256 of the media bytes
        pa.field("modality", pa.string(), nullable=False),  # image | video | audio
        pa.field("source", pa.string(), nullable=False),  # synthetic | folder | manifest | hf
        pa.field("source_id", pa.string(), nullable=False),  # where it came from (path, row, index)
        pa.field("uri", pa.string(), nullable=False),  # path of the stored media file, relative to the run dir
        pa.field("ext", pa.string(), nullable=False),  # jpg | png | mp4 | wav ...
        pa.field("mime", pa.string(), nullable=False),
        pa.field("bytes", pa.int64(), nullable=False),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("duration_s", pa.float64()),
        pa.field("fps", pa.float64()),
        pa.field("num_frames", pa.int32()),
        pa.field("sample_rate", pa.int32()),
        pa.field("channels", pa.int32()),
        pa.field("licence", pa.string()),
        pa.field("grounding", pa.string()),  # JSON (acd.grounding), null when the source knows no truth
        pa.field("existing_captions", pa.string()),  # JSON list of captions a manifest/hf row brought, or null
        # Video longer than video.max_decode_frames (null otherwise; parts written before these existed read
        # as null): the input's duration when the stored file was cut to the cap on re-encode, and the
        # number of frames decoded to validate a file stored as-is whose frames after the cap went unchecked.
        pa.field("source_duration_s", pa.float64()),
        pa.field("checked_frames", pa.int32()),
    ]
)

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),  # ingest | generate | check ...
        pa.field("reason", pa.string(), nullable=False),  # short machine-readable code, e.g. truncated_image
        pa.field("detail", pa.string()),  # human-readable explanation
    ]
)

# One row per preference pair. Stages fill columns progressively; a column a stage has not reached is null.
PAIR_SCHEMA = pa.schema(
    [
        pa.field("pair_id", pa.string(), nullable=False),
        pa.field("lot_id", pa.string(), nullable=False),
        pa.field("modality", pa.string(), nullable=False),
        pa.field("media_key", pa.string(), nullable=False),
        pa.field("instruction_type", pa.string(), nullable=False),
        pa.field("control", pa.string(), nullable=False),  # content | style
        pa.field("length_key", pa.string(), nullable=False),  # acd.taxonomy.LengthConstraint.key ("none" = no constraint)
        pa.field("length_constraint", pa.string()),  # the release's sentence, or null
        pa.field("is_qcc", pa.bool_(), nullable=False),  # rejected == chosen by design
        pa.field("rejection_strategy", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("instruction", pa.string()),  # q
        pa.field("chosen", pa.string()),  # c
        pa.field("rejected", pa.string()),  # a
        pa.field("backend", pa.string()),
        pa.field("model", pa.string()),
        pa.field("model_revision", pa.string()),
        pa.field("prompt_template_id", pa.string()),
        pa.field("prompt_template_hash", pa.string()),
        pa.field("gen_params", pa.string()),  # JSON
        pa.field("attempts", pa.int32()),
        pa.field("check_passed", pa.bool_()),
        pa.field("check_failures", pa.list_(pa.string())),
        pa.field("judge_score", pa.float64()),
        pa.field("review_status", pa.string()),  # pending | sampled | reviewed | auto
        pa.field("review_decision", pa.string()),  # accepted | rejected | needs_more (the lot's decision)
        pa.field("reviewer", pa.string()),
        pa.field("original_chosen", pa.string()),  # set when an annotator's correction replaced chosen
    ]
)

PAIR_COLUMNS = tuple(PAIR_SCHEMA.names)
PLAN_COLUMNS = (
    "pair_id", "lot_id", "modality", "media_key", "instruction_type", "control", "length_key",
    "length_constraint", "is_qcc", "rejection_strategy", "split", "seed",
)


def empty_table(schema: pa.Schema) -> pa.Table:
    return schema.empty_table()


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Return `table` with exactly `schema`'s columns in order; missing nullable columns become null.

    Raises ValueError naming the column when a required column is missing or a value has the wrong type,
    so a stage that breaks the contract fails loudly at the write, not three stages later.
    """
    columns = []
    for field in schema:
        if field.name in table.column_names:
            col = table.column(field.name)
            try:
                col = col.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise ValueError(f"column {field.name!r}: cannot cast {col.type} to {field.type}: {exc}") from exc
            if not field.nullable and col.null_count:
                raise ValueError(f"column {field.name!r} must not be null ({col.null_count} nulls)")
            columns.append(col)
        elif field.nullable:
            columns.append(pa.nulls(table.num_rows, field.type))
        else:
            raise ValueError(f"required column {field.name!r} is missing")
    return pa.Table.from_arrays(columns, schema=schema)


def rows_to_table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    if not rows:
        return schema.empty_table()
    names = schema.names
    data = {n: [r.get(n) for r in rows] for n in names}
    return conform(pa.table({n: pa.array(v, type=schema.field(n).type) for n, v in data.items()}), schema)


_ARROW_TO_JSON = {
    pa.string(): {"type": "string"},
    pa.int32(): {"type": "integer"},
    pa.int64(): {"type": "integer"},
    pa.float64(): {"type": "number"},
    pa.bool_(): {"type": "boolean"},
}


def json_schema(schema: pa.Schema, title: str) -> dict:
    """A JSON Schema (draft 2020-12) equivalent of an Arrow schema, for non-Python consumers."""
    props, required = {}, []
    for f in schema:
        if pa.types.is_list(f.type):
            spec = {"type": "array", "items": dict(_ARROW_TO_JSON[f.type.value_type])}
        else:
            spec = dict(_ARROW_TO_JSON[f.type])
        if f.nullable:
            spec["type"] = [spec["type"], "null"]
        else:
            required.append(f.name)
        props[f.name] = spec
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }


def dumps(obj: Any) -> str:
    """Canonical JSON: sorted keys, no whitespace variance, so bytes are stable across runs."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
