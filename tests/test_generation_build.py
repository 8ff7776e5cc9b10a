"""Generation through the real build (acd.pipeline.run_build, the CLI's path) against the local
OpenAI-compatible server: faults then healing, prompt edits, endpoint failures, secrets, repeated samples.

Speed is measured in `make bench` (tests/bench/bench_build_generation.py), not here.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from acd.errors import BackendUnavailable
from acd.pipeline import run_build
from acd.testing.openai_server import FAULT_KINDS, OpenAITestServer

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(300)

DEADLETTER_REASONS = {"http_500", "timeout", "malformed_json", "empty_choices", "length_cutoff", "http_429"}


def _overrides(*servers, keys=None, **backend) -> dict:
    eps = []
    for i, s in enumerate(servers):
        ep = {"base_url": s.base_url, "max_in_flight": 32}
        if keys:
            ep["api_key_env"] = keys[i]
        eps.append(ep)
    return {
        "source": {"counts": {"image": 8, "video": 0, "audio": 6}},
        "pairs": {"image": 90, "video": 0, "audio": 40},
        "lot_size": 32,
        # The test server's captions are plausible prose, not about the picture: they are held to grammar and
        # facts; the type contracts and the rest are the grounded writer's and a real model's business.
        "checks": {"judge": "none", "max_attempts": 2, "content": ["grammar", "facts"]},
        "backend": {"name": "openai", "endpoints": eps,
                    "models": {"instruct": "test-model", "chosen": "test-model", "rejected": "weak-model"},
                    "params": {"temperature": 0.7, "max_tokens": 512}, "timeout_s": 5, "backoff_base_s": 0.02,
                    # Off where a test counts the server's requests exactly (a hedge is a deliberate copy).
                    "hedge": False, **backend},
    }


def _with_cache(ov: dict, tmp_path: Path) -> dict:
    ov["backend"]["cache_dir"] = str(tmp_path / "cache")
    return ov


def _generated(run: Path):
    return pq.read_table(str(run / "generate")).to_pylist() if (run / "generate").exists() else []


def _exported(out: Path) -> list[dict]:
    return pq.read_table(str(out / "pairs")).to_pylist()


def _planned(run: Path) -> set[str]:
    return set(pq.read_table(str(run / "plan")).column("pair_id").to_pylist())


def _tree_bytes(*dirs: Path):
    for d in dirs:
        for p in Path(d).rglob("*"):
            if p.is_file():
                yield p, p.read_bytes()


def test_faults_every_pair_accounted_then_healed_and_exported(tmp_path):
    run, out = tmp_path / "run", tmp_path / "out"
    with OpenAITestServer(median=0.003, sigma=0.5, slots=64, seed=3) as srv:
        srv.set_faults(rate=0.2, kinds=list(FAULT_KINDS), retry_after=0.05, hang_s=60)
        ov = _with_cache(_overrides(srv, max_retries=1, timeout_s=1.0, max_rate_limit_retries=2, hedge=True), tmp_path)
        run_build("demo", out, run_dir=run, overrides=ov)
        planned = _planned(run)
        rows = _generated(run)
        assert {r["pair_id"] for r in rows} == planned and len(rows) == len(planned)  # one row per planned pair
        dead = pq.read_table(str(run / "deadletter")).to_pylist()
        dead_pairs = {d["pair_id"] for d in dead}
        assert dead_pairs, "20% faults with one retry must dead-letter some pairs"
        assert {d["error"] for d in dead} <= DEADLETTER_REASONS, {d["error"] for d in dead}
        for r in rows:  # every pair passed, or failed with its reasons (dead letters name role and error)
            assert r["check_passed"] or r["check_failures"], r["pair_id"]
            if r["pair_id"] in dead_pairs and not r["check_passed"]:
                assert any(f.startswith("deadletter:") for f in r["check_failures"])
        first = _exported(out)
        assert not {p["pair_id"] for p in first} & {r["pair_id"] for r in rows if not r["check_passed"]}

        # Heal: the rerun generates the dead letters; the export has every pair that passes its checks.
        srv.heal()
        srv.reset()
        run_build("demo", out, run_dir=run, overrides=ov)
        assert srv.stats()["requests"] > 0
        assert pq.read_table(str(run / "deadletter")).num_rows == 0
        rows2 = _generated(run)
        passed = {r["pair_id"] for r in rows2 if r["check_passed"]}
        healed = dead_pairs & passed
        assert healed, "healed pairs must pass their checks"
        second = _exported(out)
        ids = [p["pair_id"] for p in second]
        assert len(ids) == len(set(ids)), "a pair exported twice"
        # Every healed pair that passed its checks in a lot the gate accepted is in the dataset (the gate may
        # reject a lot on its compliance: then none of its pairs are).
        accepted = {d["lot_id"] for d in pq.read_table(str(run / "review_decisions")).to_pylist()
                    if d["decision"] == "accepted"}
        reviewed_ok = {r["pair_id"] for r in pq.read_table(str(run / "review")).to_pylist()
                       if r["check_passed"] and r["lot_id"] in accepted}
        must = healed & reviewed_ok
        assert must, "no healed pair in an accepted lot: the test proves nothing"
        assert must <= set(ids), f"{len(must - set(ids))} healed pairs missing from the export"
        assert set(ids) == reviewed_ok

        # Third run: nothing to send, same dataset.
        srv.reset()
        manifest = (out / "manifest.json").read_bytes()
        run_build("demo", out, run_dir=run, overrides=ov)
        assert srv.stats()["requests"] == 0
        assert (out / "manifest.json").read_bytes() == manifest

    # No duplicates in the shards either: each pair id once across all tars.
    import webdataset as wds

    seen = []
    for tar in sorted((out / "shards").rglob("*.tar")):
        for sample in wds.WebDataset(str(tar), shardshuffle=False):
            seen += [p["pair_id"] for p in json.loads(sample["json"])["pairs"]]
    assert sorted(seen) == sorted(ids)


def test_prompt_edit_resends_only_changed_requests(tmp_path, monkeypatch):
    import shutil

    from acd import paths

    prompts = tmp_path / "prompts"
    shutil.copytree(paths.PROMPTS_DIR, prompts)
    monkeypatch.setattr(paths, "PROMPTS_DIR", prompts)
    run, out = tmp_path / "run", tmp_path / "out"
    with OpenAITestServer(median=0.002) as srv:
        ov = _with_cache(_overrides(srv), tmp_path)
        run_build("demo", out, run_dir=run, overrides=ov)
        first_requests = srv.stats()["requests"]
        before = {p["pair_id"]: p for p in _exported(out)}
        parts_before = {p.parent.name: p.read_bytes() for p in (run / "generate").glob("*/part-0.parquet")}

        # Edit what a compliant image "instance" caption does (the `ask:` of one template).
        f = prompts / "image" / "instance.yaml"
        text = f.read_text()
        assert "ask:" in text
        f.write_text(text.replace("ask:", "ask: Name every object in the order of its size, largest first.", 1)
                     if "ask: |" not in text else text.replace("ask: |", "ask: |\n  Name every object by size.", 1))
        srv.reset()
        run_build("demo", out, run_dir=run, overrides=ov)
        resent = srv.stats()["requests"]
        after = {p["pair_id"]: p for p in _exported(out)}

    changed_lots = {name for name, b in parts_before.items()
                    if (run / "generate" / name / "part-0.parquet").read_bytes() != b}
    assert changed_lots and all(name.startswith("image-instance-") for name in changed_lots), changed_lots
    n_instance = sum(1 for p in before.values() if p["instruction_type"] == "instance")
    assert 0 < resent <= 3 * n_instance < first_requests  # only that type's requests went out again
    new_captions = [pid for pid, p in after.items() if p["instruction_type"] == "instance"
                    and pid in before and p["chosen"] != before[pid]["chosen"]]
    assert new_captions, "the edited template's new captions must reach the export"
    assert all(after[pid]["chosen"] == p["chosen"] for pid, p in before.items()
               if p["instruction_type"] != "instance" and pid in after)


def test_one_endpoint_rejects_the_key_the_other_serves_and_no_key_is_stored(tmp_path, monkeypatch):
    wrong, right = "sk-wrong-SECRET-4711", "sk-right-SECRET-0815"
    monkeypatch.setenv("ACD_TEST_WRONG_KEY", wrong)
    monkeypatch.setenv("ACD_TEST_RIGHT_KEY", right)
    run, out = tmp_path / "run", tmp_path / "out"
    with OpenAITestServer(median=0.002, api_key=right) as bad, OpenAITestServer(median=0.002, api_key=right) as good:
        ov = _with_cache(_overrides(bad, good, keys=["ACD_TEST_WRONG_KEY", "ACD_TEST_RIGHT_KEY"]), tmp_path)
        result = run_build("demo", out, run_dir=run, overrides=ov)
        assert bad.stats()["outcomes"].get("401", 0) >= 1  # it echoed the wrong key at least once
        assert good.stats()["outcomes"]["ok"] > 0
    rows = _generated(run)
    assert rows and all(not any(f.startswith("deadletter:") for f in r["check_failures"] or []) for r in rows)
    assert result["manifest"]["counts"]["pairs"] > 0
    for path, data in _tree_bytes(run, out):
        assert wrong.encode() not in data and right.encode() not in data, path


def test_no_endpoint_can_serve_stops_with_one_line_and_a_rerun_continues(tmp_path, monkeypatch):
    wrong = "sk-echoed-SECRET-999"
    monkeypatch.setenv("ACD_TEST_WRONG_KEY", wrong)
    run, out = tmp_path / "run", tmp_path / "out"
    with OpenAITestServer(median=0.002, api_key="the-right-one") as srv:
        ov = _with_cache(_overrides(srv, keys=["ACD_TEST_WRONG_KEY"]), tmp_path)
        args = [sys.executable, "-m", "acd.cli", "build", "--recipe", "demo", "--out", str(out), "--run-dir", str(run)]
        for k, v in ov.items():
            args += ["--set", f"{k}={json.dumps(v)}"]
        env = dict(os.environ, ACD_WORKERS="1")
        res = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
        assert res.returncode == 2, res.stderr[-2000:]
        assert "Traceback" not in res.stderr
        error_lines = [ln for ln in res.stderr.splitlines() if ln.startswith("acd build: error:")]
        assert len(error_lines) == 1, res.stderr[-2000:]
        line = error_lines[0]
        assert srv.base_url in line and "401" in line and "ACD_TEST_WRONG_KEY" in line
        assert wrong not in res.stderr and wrong not in res.stdout
        for path, data in _tree_bytes(run):
            assert wrong.encode() not in data, path

    # Connection refused: the same one clear line, naming the address.
    with OpenAITestServer(median=0.002) as gone:
        url = gone.base_url
    ov2 = _with_cache(_overrides(gone, down_after_s=1.0), tmp_path)
    args2 = [a for a in args]
    args2[args2.index("--run-dir") + 1] = str(tmp_path / "run2")
    args2 = args2[: args2.index("--set")]
    for k, v in ov2.items():
        args2 += ["--set", f"{k}={json.dumps(v)}"]
    res2 = subprocess.run(args2, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert res2.returncode == 2 and "Traceback" not in res2.stderr, res2.stderr[-2000:]
    assert url in res2.stderr and "refuses connections" in res2.stderr

    # Fixed key: the rerun continues in the same run directory and finishes.
    monkeypatch.setenv("ACD_TEST_WRONG_KEY", "the-right-one")
    with OpenAITestServer(median=0.002, api_key="the-right-one") as srv2:
        ov3 = _with_cache(_overrides(srv2, keys=["ACD_TEST_WRONG_KEY"]), tmp_path)
        ov3["backend"]["endpoints"][0]["base_url"] = srv2.base_url
        # Same recipe but for the server's port: a different recipe hash is fine, the run dir is given.
        try:
            run_build("demo", out, run_dir=tmp_path / "run3", overrides=ov3)
        except BackendUnavailable as exc:  # pragma: no cover - would be the bug
            pytest.fail(f"healthy endpoint refused: {exc}")
    assert _exported(out)


def test_repeated_samples_are_distinct_requests_and_pairs(tmp_path):
    """More pairs than (media, type, length, strategy) combinations: each pair samples with its own seed."""
    run, out = tmp_path / "run", tmp_path / "out"
    with OpenAITestServer(median=0.002) as srv:
        ov = _with_cache(_overrides(srv), tmp_path)
        ov["source"]["counts"] = {"image": 2, "video": 0, "audio": 0}
        ov["pairs"] = {"image": 180, "video": 0, "audio": 0}
        ov["length_control_share"] = 0.0
        run_build("demo", out, run_dir=run, overrides=ov)
        st = srv.stats()
    rows = _generated(run)
    assert len(rows) == 180
    triples = {(r["instruction"], r["chosen"], r["rejected"]) for r in rows if r["chosen"]}
    assert len(triples) == sum(1 for r in rows if r["chosen"])
    assert st["distinct"] == st["requests"]  # no request was sent twice


def test_grounded_writer_change_makes_its_lots_stale(tmp_path, monkeypatch):
    """The grounded backend's inputs are its phrasing files and the writer's code (its revision): a build
    made by another revision is generated again, not resumed with stale captions."""
    from acd.grounded import phrasing
    from acd.pipeline import Build
    from acd.stages.generate import lot_state

    ov = {"source": {"counts": {"image": 4, "video": 0, "audio": 2}}, "pairs": {"image": 8, "video": 0, "audio": 4},
          "lot_size": 8, "checks": {"judge": "none"}}
    run_build("demo", tmp_path / "out", tmp_path / "run", overrides=ov)
    build = Build.from_run_dir(tmp_path / "run", tmp_path / "out")
    lots = build.lots()
    assert lots and {lot_state(build, lot) for lot in lots} == {"done"}
    monkeypatch.setattr(phrasing, "current_revision", lambda directory=None: "another-writer")
    assert {lot_state(build, lot) for lot in lots} == {"stale"}
