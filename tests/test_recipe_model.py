"""Typed recipes: a misspelt key anywhere fails at load, naming its path and the nearest valid name; the
recipe is returned as written (its hash names the run dir); the committed JSON Schemas are what the code
generates, and they work for tools outside Python."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import jsonschema
import pytest
import yaml

from acd.paths import RECIPES_DIR, SCHEMAS_DIR
from acd.recipe import RecipeError, load_recipe
from acd.schema_files import generated, text

OPENAI = {"name": "openai", "endpoints": [{"base_url": "http://gpu1:8000/v1", "api_key_env": "VLLM_API_KEY",
                                           "max_in_flight": 64}],
          "models": {"instruct": "m72", "chosen": "m72", "rejected": "m7", "judge": "m72", "rejected:weak_model": "m3"},
          "rpm": 6000, "tpm": 2_000_000, "timeout_s": 120, "min_timeout_s": 2, "hedge": True, "max_retries": 5, "params": {"temperature": 0.7},
          "cache_dir": "/tmp/c"}
FOLDER = {"kind": "folder", "root": "/data", "include": ["*.jpg"], "on_wrong_extension": "accept",
          "limits": {"image": {"max_pixels": 1000}, "video": {"playable": {"mov": ["h264"]}}}}
MANIFEST = {"kind": "manifest", "path": "m.jsonl", "caption_columns": ["a", "b"], "allow_http": True}
HF = {"kind": "hf", "path": "d", "split": "train", "image_column": "img", "data_files": {"train": "x.parquet"}}

# (overrides with one misspelt key, the dotted path the error must name, the suggestion it must make)
MISSPELT = [
    ({"lot_sise": 64}, "lot_sise", "lot_size"),
    ({"source": {"batchsize": 8}}, "source.batchsize", "batch_size"),
    ({"source": {"counts": {"imagee": 3}}}, "source.counts.imagee", "image"),
    ({"source": {"kind": "synthetc"}}, "source.kind", "synthetic"),
    ({"source": {**FOLDER, "recursve": False}}, "source.recursve", "recursive"),
    ({"source": {**FOLDER, "limits": {"image": {"longest_sid": 9}}}}, "source.limits.image.longest_sid", "longest_side"),
    ({"source": {**MANIFEST, "path_colum": "p"}}, "source.path_colum", "path_column"),
    ({"source": {**HF, "streamin": False}}, "source.streamin", "streaming"),
    ({"pairs": {"vidoe": 3}}, "pairs.vidoe", "video"),
    ({"backend": {"name": "grounded", "phrasing_dr": "x"}}, "backend.phrasing_dr", "phrasing_dir"),
    ({"backend": {**OPENAI, "time_out_s": 3}}, "backend.time_out_s", "timeout_s"),
    ({"backend": {**OPENAI, "endpoints": [{"base_url": "http://h/v1", "api_key_evn": "K"}]}},
     "backend.endpoints[0].api_key_evn", "api_key_env"),
    ({"backend": {"name": "vllm", "model": "m", "engin": {}}}, "backend.engin", "engine"),
    ({"backend": {"name": "opneai"}}, "backend.name", "openai"),
    ({"checks": {"judge_sampel_rate": 0.5}}, "checks.judge_sampel_rate", "judge_sample_rate"),
    ({"review": {"compliance_bsr": 0.9}}, "review.compliance_bsr", "compliance_bar"),
    ({"review": {"label_studio": {"webhok_url": "http://h"}}}, "review.label_studio.webhok_url", "webhook_url"),
    ({"shards": {"target_byte": 10}}, "shards.target_byte", "target_bytes"),
    ({"export": {"rows_per_fil": 10}}, "export.rows_per_fil", "rows_per_file"),
]


@pytest.mark.parametrize("overrides,path,suggestion", MISSPELT, ids=[m[1] for m in MISSPELT])
def test_misspelt_key_is_named_with_its_nearest_valid_name(overrides, path, suggestion):
    with pytest.raises(RecipeError) as err:
        load_recipe("demo", overrides)
    msg = str(err.value)
    assert f"'{path}'" in msg or f"{path}:" in msg, msg
    assert f"did you mean '{suggestion}'?" in msg, msg
    assert "demo.yaml" in msg


def test_wrong_types_and_missing_keys_are_named():
    with pytest.raises(RecipeError, match=r"lot_size: .*integer"):
        load_recipe("demo", {"lot_size": "big"})
    with pytest.raises(RecipeError, match=r"checks.judge: .*'offline', 'none' or 'llm'"):
        load_recipe("demo", {"checks": {"judge": "offlne"}})
    with pytest.raises(RecipeError, match=r"missing required key 'source.root'"):
        load_recipe("demo", {"source": {"kind": "folder"}})
    with pytest.raises(RecipeError, match=r"backend.models: .*unknown role 'chosn' \(did you mean 'chosen'\?\)"):
        load_recipe("demo", {"backend": {**OPENAI, "models": {"chosn": "m"}}})
    with pytest.raises(RecipeError, match=r"qcc_share: .*less than or equal to 1"):
        load_recipe("demo", {"qcc_share": 40})


@pytest.mark.parametrize("name", sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")))
def test_shipped_recipes_load_as_written(name):
    """The recipe keeps the file's mapping as written (its hash names the run dir), and every value written
    is the model's value (validation coerces nothing a user would notice)."""
    raw = yaml.safe_load((RECIPES_DIR / f"{name}.yaml").read_text())
    r = load_recipe(name)
    assert r.written == raw
    effective = r.effective()

    def same(written, eff, path=""):
        if isinstance(written, dict):
            for k, v in written.items():
                same(v, eff[k], f"{path}{k}.")
        else:
            assert written == eff, (path, written, eff)

    same(raw, effective)


def test_every_source_and_backend_kind_validates():
    for source in (FOLDER, MANIFEST, HF):
        for backend in (OPENAI, {"name": "vllm", "model": "m", "engine": {"tensor_parallel_size": 2}}):
            r = load_recipe("demo", {"source": source, "backend": backend})
            assert r.written["source"] == {**source} and r.backend.name == backend["name"]
            assert r.source.kind == source["kind"]
        # valid keys, but real media have no grounding for the offline backend to caption (issue 13)
        with pytest.raises(RecipeError, match="'grounded' backend cannot caption"):
            load_recipe("demo", {"source": source, "backend": {"name": "grounded"}})


def test_an_override_of_another_kind_replaces_the_section():
    r = load_recipe("demo", {"source": {"kind": "folder", "root": "/d"}, "backend": OPENAI})
    assert r.written["source"] == {"kind": "folder", "root": "/d"}  # not the demo's synthetic counts merged in
    assert r.source.root == "/d" and r.source.batch_size == 256
    counts = load_recipe("demo", {"source": {"counts": {"image": 3}}}).source.counts
    assert counts.model_dump() == {"image": 3, "video": 60, "audio": 80}


def test_cli_refuses_a_misspelt_key_before_any_work(tmp_path):
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "acd.cli", "build", "--recipe", "demo", "--out", str(tmp_path / "out"),
                        "--run-dir", str(tmp_path / "run"), "--set", "checks.judge_sampel_rate=0.5"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode != 0
    assert "unknown key 'checks.judge_sampel_rate' (did you mean 'judge_sample_rate'?)" in p.stderr, p.stderr[-2000:]
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "out").exists()
    print(f"refused in {time.monotonic() - t0:.2f} s")


def test_committed_schemas_are_the_generated_ones():
    for name, schema in generated().items():
        path = SCHEMAS_DIR / name
        assert path.exists(), f"{path} missing: run `acd schemas`"
        assert path.read_text(encoding="utf-8") == text(schema), f"{path} is stale: run `acd schemas` and commit it"


def test_recipe_json_schema_works_outside_python():
    schema = json.loads((SCHEMAS_DIR / "recipe.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    for p in RECIPES_DIR.glob("*.yaml"):
        validator.validate(yaml.safe_load(p.read_text()))
    validator.validate({**load_recipe("demo").written, "source": FOLDER, "backend": OPENAI})
    validator.validate(load_recipe("demo").effective())  # the effective recipe (<run>/recipe.json) too
    bad = {**load_recipe("demo").written, "checks": {"judge_sampel_rate": 0.5}}
    assert [e.message for e in validator.iter_errors(bad) if "judge_sampel_rate" in e.message]


def test_record_json_schemas_match_rows():
    from acd.records import PAIR_SCHEMA, json_schema

    schema = json.loads((SCHEMAS_DIR / "pair.schema.json").read_text())
    assert schema == json_schema(PAIR_SCHEMA, "pair")
    assert set(schema["properties"]) == set(PAIR_SCHEMA.names)
