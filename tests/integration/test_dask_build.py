"""Several machines: build-acd's lot tasks on a Dask cluster (prefect-dask) give the same bytes as one process.

The task runner is chosen when flows/build_acd.py is imported, from ACD_DASK_WORKERS / ACD_DASK_ADDRESS, so
the Dask build runs in a subprocess with that env, reporting to the session's real Prefect server.
"""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.prefect_server, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, os, sys
from flows.build_acd import build_acd
from prefect_dask import DaskTaskRunner
assert isinstance(build_acd.task_runner, DaskTaskRunner), build_acd.task_runner
result = build_acd(recipe="demo", out_dir=sys.argv[1], run_dir=sys.argv[2], overrides=json.loads(sys.argv[3]))
print("RESULT " + json.dumps(result))
"""


def _files(out: Path) -> dict[str, bytes]:
    manifest = json.loads((out / "manifest.json").read_text())
    files = {f["path"]: (out / f["path"]).read_bytes() for f in manifest["files"]}
    files["manifest.json"] = (out / "manifest.json").read_bytes()
    return files


def test_build_pickles(tmp_path, tiny_overrides):
    from acd.pipeline import Build
    from acd.recipe import load_recipe

    build = Build(load_recipe("demo", tiny_overrides), tmp_path / "run", tmp_path / "out")
    _ = build.source  # a live source (and, in a real build, backend and judge) must not travel to workers
    clone = pickle.loads(pickle.dumps(build))
    assert clone._source is None and clone._backend is None and clone._judge is None
    assert clone.recipe == build.recipe and clone.run_dir == build.run_dir


def test_dask_local_cluster_build_matches_single_process(prefect_stack, tmp_path, tiny_overrides):
    from acd.pipeline import run_build

    dask_out, dask_run = tmp_path / "dask-out", tmp_path / "dask-run"
    env = dict(prefect_stack.env)
    env.pop("ACD_DASK_ADDRESS", None)
    env["ACD_DASK_WORKERS"] = "2"
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(dask_out), str(dask_run), json.dumps(tiny_overrides)],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=200)
    dask_s = time.monotonic() - t0
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-6000:]
    # prefect-dask started a LocalCluster for the flow run (2 worker processes).
    assert "LocalCluster" in log, log[-3000:]
    result = json.loads(next(ln for ln in res.stdout.splitlines() if ln.startswith("RESULT "))[7:])
    assert result["lots"] > 2

    t0 = time.monotonic()
    ref = run_build("demo", tmp_path / "ref-out", run_dir=tmp_path / "ref-run", overrides=tiny_overrides)
    ref_s = time.monotonic() - t0
    print(f"dask (2 workers) build {dask_s:.1f}s incl. interpreter and cluster start; single process {ref_s:.1f}s")
    assert ref["lots"] == result["lots"]

    a, b = _files(dask_out), _files(tmp_path / "ref-out")
    assert sorted(a) == sorted(b)
    differ = [p for p in a if a[p] != b[p]]
    assert not differ, f"files differ between the Dask and the single-process build: {differ[:10]}"
    assert len(a) > 10
