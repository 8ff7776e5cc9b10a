"""Cost (issue 23, parts 1-3): `acd estimate` before any request, the usage the server reports, and
backend.budget_usd, all through the CLI against the local OpenAI-compatible server counting usage by OpenAI's
published rules (usage_rule="gpt-4o": images by their tiles, audio by its seconds)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from acd import cost
from acd.pipeline import default_run_dir
from acd.recipe import identity, load_recipe
from acd.recipe_model import RecipeError
from acd.testing.openai_server import OpenAITestServer
from server_recipe import PRICES, server_recipe

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(600)


def _recipe(tmp: Path, srv, cache: str, **backend) -> Path:
    return server_recipe(tmp, srv, cache, name="costtest",
                         source={"kind": "synthetic", "counts": {"image": 6, "video": 3, "audio": 4}},
                         pairs={"image": 36, "video": 18, "audio": 18}, **backend)


def _acd(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), ACD_WORKERS="1")
    return subprocess.run([sys.executable, "-m", "acd.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=500)


def _server_usd(stats: dict) -> float:
    return sum(u.get("prompt_tokens", 0) * PRICES[m]["input_per_mtok"] / 1e6
               + u.get("completion_tokens", 0) * PRICES[m]["output_per_mtok"] / 1e6
               for m, u in stats["usage_by_model"].items())


def _pairs(out: Path) -> set[str]:
    return set(pq.read_table(str(out / "pairs")).column("pair_id").to_pylist())


def test_image_tokens_follow_openais_published_examples():
    p = cost.price_for("gpt-4o")
    assert cost.image_tokens(1024, 1024, p) == 765  # 768x768: 4 tiles (OpenAI's worked example)
    assert cost.image_tokens(2048, 4096, p) == 1105  # 1024x2048 -> 768x1536: 6 tiles
    assert cost.image_tokens(4096, 8192, p, "low") == 85
    mini = cost.price_for("gpt-4o-mini")
    assert cost.image_tokens(1024, 1024, mini) == 2833 + 4 * 5667
    assert cost.frame_size(1280, 720) == (768, 432)


def test_budget_is_not_part_of_the_run_identity():
    a = load_recipe("demo")
    b = load_recipe("demo", {"backend": {"name": "openai", "model": "gpt-4o", "base_url": "http://x/v1"}})
    c = load_recipe("demo", {"backend": {"name": "openai", "model": "gpt-4o", "base_url": "http://x/v1",
                                         "budget_usd": 12.5}})
    assert default_run_dir(b) == default_run_dir(c) != default_run_dir(a)
    assert identity(b.effective()) == identity(c.effective()) and b.effective() != c.effective()
    with pytest.raises(RecipeError, match="input_per_mtok|inptu"):
        load_recipe("demo", {"backend": {"name": "openai", "model": "m", "base_url": "http://x/v1",
                                         "prices": {"m": {"inptu_per_mtok": 1, "output_per_mtok": 2}}}})


def test_estimate_matches_the_online_build_and_a_budget_stops_then_resumes(tmp_path):
    with OpenAITestServer(usage_rule="gpt-4o", median=0.002, slots=32, process=True) as srv:
        # 1. The estimate, then the unbudgeted online build into the same run directory.
        recipe = _recipe(tmp_path, srv, "cache-a")
        run_a, out_a = tmp_path / "run-a", tmp_path / "out-a"
        r = _acd("estimate", "--recipe", str(recipe), "--run-dir", str(run_a), "--json")
        assert r.returncode == 0, r.stderr
        est = json.loads(r.stdout)
        assert srv.stats()["requests"] == 0  # the estimate sent nothing
        assert {"requests", "prompt_tokens", "completion_tokens", "usd_online", "usd_batch"} <= set(est)
        assert est["usd_batch"] == pytest.approx(est["usd_online"] * 0.5, rel=1e-3)
        r = _acd("build", "--recipe", str(recipe), "--run-dir", str(run_a), "--out", str(out_a))
        assert r.returncode == 0, r.stderr
        online = srv.stats()
        sent, prompt = online["requests"], online["usage"]["prompt_tokens"]
        print(f"estimate vs sent: requests {est['requests']} / {sent}, prompt tokens {est['prompt_tokens']} / "
              f"{prompt}, completion {est['completion_tokens']} / {online['usage']['completion_tokens']}, "
              f"usd {est['usd_online']} / {_server_usd(online):.4f}")
        assert abs(est["requests"] - sent) <= 0.10 * sent
        assert abs(est["prompt_tokens"] - prompt) <= 0.25 * prompt
        # The run's usage parts and its ledger are the server's own figures.
        usage = pq.read_table(str(run_a / "usage")).to_pylist()
        assert sum(u["prompt_tokens"] for u in usage) == prompt and len(usage) == sent
        assert cost.ledger(run_a)["usd"] == pytest.approx(_server_usd(online), rel=1e-4)
        assert "Model cost" in (out_a / "report.html").read_text()
        card = (out_a / "README.md").read_text()  # the dataset card states what the dataset cost to generate
        assert "## Generation cost" in card and f"**{_server_usd(online):.2f} USD**" in card and "(online)" in card
        stats = _acd("stats", str(out_a), "--run-dir", str(run_a))
        assert stats.returncode == 0 and "cost (server-reported usage)" in stats.stdout
        one_run = _server_usd(online)

        # 2. A budget of 40% of the estimate, fresh cache and run directory: stops with one line.
        srv.reset()
        budget = round(0.4 * est["usd_online"], 4)
        recipe_b = _recipe(tmp_path, srv, "cache-b", budget_usd=budget)
        run_b, out_b = tmp_path / "run-b", tmp_path / "out-b"
        r = _acd("build", "--recipe", str(recipe_b), "--run-dir", str(run_b), "--out", str(out_b))
        assert r.returncode == 2, (r.stdout, r.stderr)
        lines = [ln for ln in r.stderr.splitlines() if ln.startswith("acd build:")]
        assert len(lines) == 1 and f"budget_usd={budget:g}" in lines[0] and "spent" in lines[0] \
            and "--set backend.budget_usd=<more>" in lines[0], r.stderr
        stopped = _server_usd(srv.stats())
        print(f"budget {budget}: server-side cost {stopped:.4f} ({stopped / budget:.3f} of it)")
        assert 0 < stopped <= 1.05 * budget
        assert cost.ledger(run_b)["usd"] >= stopped - 1e-6  # the next run's budget starts from what was paid

        # 3. A larger budget, same run directory: finishes with the unbudgeted build's pairs; together both
        # runs cost no more than one online run (+5%): nothing is sent twice.
        recipe_b2 = _recipe(tmp_path, srv, "cache-b", budget_usd=round(10 * est["usd_online"], 4))
        r = _acd("build", "--recipe", str(recipe_b2), "--run-dir", str(run_b), "--out", str(out_b))
        assert r.returncode == 0, r.stderr
        both = _server_usd(srv.stats())
        print(f"stopped + resumed: {both:.4f} USD vs one online run {one_run:.4f}")
        # The bar is 1.05x; the stop lets the requests on the wire finish (cached), so nothing is paid
        # twice and the two runs cost what one does (measured: 1.000x).
        assert both <= 1.01 * one_run
        assert _pairs(out_b) == _pairs(out_a)
        # Every request sent was answered and settled by its usage: the ledger is the server's bill. (A request
        # cut off on the wire would count at its reservation, an upper bound: the ledger never runs short.)
        paid = cost.ledger(run_b)["usd"]
        print(f"ledger {paid:.4f} USD vs server-side {both:.4f}")
        assert both - 1e-6 <= paid <= both + 0.011
