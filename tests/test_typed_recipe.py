"""One typed recipe at runtime (issue 22): load_recipe returns the frozen Recipe model, the engine reads
attributes (no raw lookups of recipe config), the JSON Schema's defaults are the values a build records in
<run>/recipe.json, and run directories recorded before typed recipes still resume."""
from __future__ import annotations

import ast
import json
import pickle
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

import acd
from acd.pipeline import RECIPE_FILE, RECIPE_WRITTEN, Build, default_run_dir
from acd.recipe import load_recipe
from acd.recipe_model import _members, recipe_json_schema, recipe_model

ROOT = Path(acd.__file__).resolve().parents[1]

# --- the recipe is typed, frozen, and picklable ----------------------------------------------------------


def test_load_recipe_returns_the_frozen_typed_model():
    r = load_recipe("demo")
    assert isinstance(r, recipe_model())
    assert r.review.compliance_bar == 0.95 and r.checks.judge == "offline" and r.source.counts.image == 120
    assert r.backend.capabilities.cpu_bound and not r.backend.capabilities.cacheable
    with pytest.raises(ValidationError):
        r.lot_size = 3  # frozen: every worker sees the recipe the driver loaded
    # What names the run directory is the mapping as written (no defaults): unset keys stay unset.
    assert "export" not in r.written and r.export.rows_per_file == 100_000


def test_recipe_pickles_into_a_fresh_process(tmp_path):
    """A Build (its recipe inside) goes to pool and Dask workers by pickle; the run-time models (made from
    schemas/checks.yaml and ingest.yaml) must be found there before anything built them."""
    r = load_recipe("demo", {"source": {"kind": "folder", "root": str(tmp_path)},
                             "backend": {"name": "openai", "base_url": "http://127.0.0.1:1/v1"}})
    blob = tmp_path / "r.pkl"
    blob.write_bytes(pickle.dumps(r))
    code = ("import pickle,sys; r = pickle.load(open(sys.argv[1], 'rb')); "
            "print(r.source.limits.video.max_side, r.checks.judge, r.backend.timeout_s, r.written['name'])")
    out = subprocess.run([sys.executable, "-c", code, str(blob)], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(r.source.limits.video.max_side), "offline", "120.0", "demo"]


# --- no raw lookups of recipe config ---------------------------------------------------------------------

def _recipe_keys() -> set[str]:
    """Every key of the recipe model tree (all sections, all source and backend kinds)."""
    keys: set[str] = set()
    seen: set[type] = set()

    def walk(t):
        for m in _members(t):
            if isinstance(m, type) and issubclass(m, BaseModel) and m not in seen:
                seen.add(m)
                for k, f in m.model_fields.items():
                    keys.add(k)
                    walk(f.annotation)
            elif typing.get_origin(m) in (list, dict, tuple):
                for a in typing.get_args(m):
                    walk(a)

    walk(recipe_model())
    return keys


# Names the engine gave the recipe or a section of it when it was a dict. A string-keyed lookup on one of
# these, or on a lookup of a section (x["backend"]["name"]), with a recipe key, is a raw read of recipe config.
RECIPE_NAMES = {"recipe", "spec", "cfg", "config", "conf", "rc", "review", "checks", "backend", "source", "ls",
                "ls_cfg", "limits", "lim", "export_cfg", "block", "section", "settings", "src", "label_studio",
                "checks_cfg", "review_cfg", "source_cfg", "backend_cfg"}
SECTIONS = {"source", "backend", "review", "checks", "shards", "export", "pairs", "label_studio", "limits",
            "counts", "video", "image", "audio", "time", "max_bytes"}

# Files whose `spec`/`config`/`cfg` mappings are not the recipe (each says what it reads instead).
NOT_RECIPE = {
    "acd/acm/": "the ACM model's training config (acm.yaml / a checkpoint's config), not the build recipe",
    "acd/checks/": "schemas/checks.yaml and contracts.yaml data tables (`spec`), read by name",
    "acd/evaluation/": "AnyCapEval's benchmark spec files",
    "acd/grounded/": "phrasing tables and a media item's grounding",
    "acd/synth/": "the synthetic world's scene specs and grounding",
    "acd/taxonomy.py": "schemas/taxonomy.yaml",
    "acd/prompts.py": "prompt template files",
    "acd/records.py": "JSON Schema field specs",
    "flows/services.py": "prefect.yaml's deployment entries",
}
# Lookups in the files above that *are* recipe config would still be caught by the section rule.


def _name(e: ast.AST) -> str | None:
    if isinstance(e, ast.Name):
        return e.id
    if isinstance(e, ast.Attribute):
        return e.attr
    return None


def _raw_lookups() -> list[str]:
    keys = _recipe_keys()
    found = []
    files = sorted((ROOT / "acd").rglob("*.py")) + sorted((ROOT / "flows").rglob("*.py"))
    for path in files:
        rel = str(path.relative_to(ROOT))
        exempt = any(rel.startswith(k) for k in NOT_RECIPE)
        for node in ast.walk(ast.parse(path.read_text(), rel)):
            if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
                recv, key = node.value, node.slice
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                  and node.args):
                recv, key = node.func.value, node.args[0]
            else:
                continue
            if not (isinstance(key, ast.Constant) and isinstance(key.value, str) and key.value in keys):
                continue
            on_section = (isinstance(recv, ast.Subscript) and isinstance(recv.slice, ast.Constant)
                          and recv.slice.value in SECTIONS and _name(recv.value) in RECIPE_NAMES)
            if on_section or (not exempt and _name(recv) in RECIPE_NAMES):
                found.append(f"{rel}:{node.lineno} {ast.unparse(node)}")
    return found


def test_the_scan_finds_raw_lookups():
    """The scanner flags the shapes the engine used to have (so a zero below means something)."""
    src = 'a = recipe["backend"]["name"]\nb = cfg.get("timeout_s", 120)\nc = row["pair_id"]\nd = spec["lot_size"]\n'
    tree = ast.parse(src)
    keys = _recipe_keys()
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and node.slice.value in keys:
            hits.append(ast.unparse(node))
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "get" and node.args[0].value in keys:
            hits.append(ast.unparse(node))
    assert {"recipe['backend']['name']", "cfg.get('timeout_s', 120)", "spec['lot_size']"} <= set(hits)
    assert "row['pair_id']" not in hits


def test_no_raw_lookups_of_recipe_config_in_the_engine():
    found = _raw_lookups()
    assert not found, "raw recipe lookups (read the typed Recipe's attributes):\n" + "\n".join(found)


# --- the schema's defaults are what a build records ------------------------------------------------------

VARIANTS = {
    "synthetic+grounded": {},
    "folder+openai": {"source": {"kind": "folder", "root": "."},
                      "backend": {"name": "openai", "base_url": "http://127.0.0.1:1/v1"}},
    "manifest+vllm": {"source": {"kind": "manifest", "path": "m.jsonl"}, "backend": {"name": "vllm", "model": "m"}},
    "hf+openai+labelstudio": {"source": {"kind": "hf", "path": "d"},
                              "backend": {"name": "openai", "endpoints": [{"base_url": "http://127.0.0.1:1/v1"}]},
                              "review": {"label_studio": {}}},
}
MINIMAL = {"name": "tiny", "seed": 1, "source": {"kind": "synthetic"}, "pairs": {"image": 1},
           "backend": {"name": "grounded"}}


def _check_defaults(schema: dict, node: dict, value, written, path: str, checked: list[str]) -> None:
    """Every property with a default in `node` (followed through $ref and unions) equals the recorded value
    where the recipe left it unset (`value`: the recorded effective mapping at this path; `written`: what
    the recipe set there)."""
    written = written if isinstance(written, dict) else {}
    defs = schema["$defs"]
    if "$ref" in node:
        node = {**defs[node["$ref"].split("/")[-1]], **{k: v for k, v in node.items() if k != "$ref"}}
    for union in ("anyOf", "oneOf"):
        if union in node and isinstance(value, dict):
            for variant in node[union]:
                target = defs[variant["$ref"].split("/")[-1]] if "$ref" in variant else variant
                props = target.get("properties", {})
                tags = [k for k in ("kind", "name") if "const" in props.get(k, {})]
                if target.get("type") == "object" and all(value.get(t) == props[t]["const"] for t in tags):
                    _check_defaults(schema, variant, value, written, path, checked)
    for key, prop in node.get("properties", {}).items():
        if not isinstance(value, dict) or key not in value:
            continue
        if "default" in prop and key not in written:
            assert value[key] == prop["default"], f"{path}{key}: schema default {prop['default']!r}, build used {value[key]!r}"
            checked.append(path + key)
        _check_defaults(schema, prop, value[key], written.get(key), f"{path}{key}.", checked)


def test_every_schema_default_is_the_value_a_build_records(tmp_path):
    committed = json.loads((ROOT / "schemas" / "recipe.schema.json").read_text())
    assert committed == json.loads(json.dumps(recipe_json_schema())), "schemas/recipe.schema.json is stale: acd schemas"
    checked: list[str] = []
    for label, override in VARIANTS.items():
        mapping = json.loads(json.dumps(MINIMAL))
        mapping.update(override)
        (tmp_path / f"{label}.yaml").write_text(json.dumps(mapping))
        recipe = load_recipe(tmp_path / f"{label}.yaml")
        build = Build(recipe, tmp_path / label / "run", tmp_path / label / "out")
        recorded = json.loads((build.run_dir / RECIPE_FILE).read_text())
        assert json.loads((build.run_dir / RECIPE_WRITTEN).read_text()) == mapping
        _check_defaults(committed, committed, recorded, mapping, "", checked)
    # The sections the engine reads defaults from were all compared (a walk that compared nothing passes).
    for must in ("qcc_share", "lot_size", "splits", "checks.judge_sample_rate", "review.on_reject",
                 "review.label_studio.token_env", "backend.timeout_s", "backend.video_frames",
                 "source.batch_size", "source.limits.video.max_side", "source.split", "shards.target_bytes",
                 "export.rows_per_file"):
        assert must in checked, (must, sorted(set(checked))[:40])


# --- run directories from before typed recipes -----------------------------------------------------------

def test_a_run_dir_recorded_before_typed_recipes_resumes_and_a_different_recipe_is_refused(tmp_path):
    recipe = load_recipe("demo", {"lot_size": 64})
    run = default_run_dir(recipe, tmp_path)
    run.mkdir(parents=True)
    # The old format: recipe.json held the mapping as written.
    (run / RECIPE_FILE).write_text(json.dumps(recipe.written, sort_keys=True, indent=2))
    build = Build(recipe, run, tmp_path / "out")
    assert json.loads((run / RECIPE_FILE).read_text()) == recipe.effective()
    assert json.loads((run / RECIPE_WRITTEN).read_text()) == recipe.written
    reopened = Build.from_run_dir(run, None)
    assert reopened.recipe == build.recipe and reopened.recipe.written == recipe.written
    with pytest.raises(ValueError, match="different recipe"):
        Build(load_recipe("demo", {"lot_size": 32}), run, tmp_path / "out")
    # The same effective recipe written another way (a default spelt out) is the same build.
    Build(load_recipe("demo", {"lot_size": 64, "export": {"rows_per_file": 100_000}}), run, tmp_path / "out")
