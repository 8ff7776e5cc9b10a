"""A model backend through the build-acd flow: the same bytes as the CLI's path, whatever order requests
complete in, with many lots in flight on the flow's task threads (one backend loop per process)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from dataset_files import manifest_files  # tests/ is on sys.path (conftest)

from acd.testing.openai_server import OpenAITestServer

pytestmark = [pytest.mark.prefect_server, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import json, sys
from flows.build_acd import build_acd
result = build_acd(recipe="demo", out_dir=sys.argv[1], run_dir=sys.argv[2], overrides=json.loads(sys.argv[3]))
print("RESULT " + json.dumps(result))
"""


def test_flow_and_cli_builds_with_a_model_backend_are_byte_identical(prefect_stack, tmp_path):
    from acd.pipeline import run_build

    # Random latency, so requests complete in a different order in each build.
    with OpenAITestServer(median=0.01, sigma=0.8, slots=32) as srv:
        ov = {
            "source": {"counts": {"image": 6, "video": 3, "audio": 4}},
            "pairs": {"image": 60, "video": 39, "audio": 30},
            "lot_size": 16,
            "checks": {"judge": "none", "content": ["grammar", "facts"]},  # test-server prose: not about the picture
            "backend": {"name": "openai", "endpoints": [{"base_url": srv.base_url, "max_in_flight": 16}],
                        "models": {"instruct": "test-model", "chosen": "test-model", "rejected": "weak-model"},
                        "params": {"max_tokens": 512}, "timeout_s": 10, "cache_dir": str(tmp_path / "cache-cli"),
                        "hedge": False},  # the test compares request counts; a hedge is a deliberate copy
        }
        run_build("demo", tmp_path / "cli-out", run_dir=tmp_path / "cli-run", overrides=ov)
        cli_requests = srv.stats()["requests"]
        srv.reset()
        ov["backend"]["cache_dir"] = str(tmp_path / "cache-flow")  # a cold cache: the flow sends everything
        res = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "flow-out"), str(tmp_path / "flow-run"),
                              json.dumps(ov)], env=prefect_stack.env, cwd=ROOT, capture_output=True, text=True,
                             timeout=240)
        assert res.returncode == 0, (res.stdout + res.stderr)[-5000:]
        st = srv.stats()
    assert st["requests"] == cli_requests and st["max_in_flight"] <= 16  # the recipe's limit held
    # cache_dir differs, so the recipes (and their hashes) differ; everything the dataset holds must not.
    a, b = manifest_files(tmp_path / "cli-out"), manifest_files(tmp_path / "flow-out")
    assert sorted(a) == sorted(b)
    differ = [p for p in a if a[p] != b[p] and p not in ("README.md", "manifest.json")]
    assert not differ, differ[:10]
    import pyarrow.parquet as pq

    pa_, pb = pq.read_table(str(tmp_path / "cli-out" / "pairs")), pq.read_table(str(tmp_path / "flow-out" / "pairs"))
    assert pa_.equals(pb) and pa_.num_rows > 50
