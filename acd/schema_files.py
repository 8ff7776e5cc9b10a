"""The JSON Schema files committed under schemas/: the record contracts (pair, media, quarantine rows) and
the recipe, generated from their single definitions (acd.records, acd.recipe_model). `acd schemas` writes
them; tests/test_recipe_model.py fails when a committed file differs from what the code generates."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def generated() -> dict[str, dict[str, Any]]:
    """file name -> JSON Schema."""
    from acd.recipe_model import recipe_json_schema
    from acd.records import MEDIA_SCHEMA, PAIR_SCHEMA, QUARANTINE_SCHEMA, json_schema

    out = {f"{name}.schema.json": json_schema(schema, name)
           for name, schema in (("pair", PAIR_SCHEMA), ("media", MEDIA_SCHEMA), ("quarantine", QUARANTINE_SCHEMA))}
    out["recipe.schema.json"] = recipe_json_schema()
    return out


def text(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write(out_dir: str | Path) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, schema in generated().items():
        path = out_dir / name
        path.write_text(text(schema), encoding="utf-8")
        paths.append(path)
    return paths
