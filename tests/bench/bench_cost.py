"""Estimate vs actual cost (issue 23): the demo recipe with every role on one OpenAI model, priced from
schemas/prices.yaml, through `acd estimate` and then `acd build` online and `acd build` in batch mode against the
project's test server (a separate process) counting usage by OpenAI's published rules for that model
(usage_rule gpt-4o / gpt-4o-mini: text ~4 characters a token, images by tiles, audio by seconds).

Actual = the server's summed usage x the table's prices; batch actual x (1 - batch_discount). Prints one table row
per model and mode, and whether both builds wrote the same pairs.

    python tests/bench/bench_cost.py [--models gpt-4o,gpt-4o-mini] [--workdir /tmp/acd-bench-cost]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from acd import cost  # noqa: E402
from acd.testing.openai_server import OpenAITestServer  # noqa: E402


def _recipe(work: Path, srv, model: str, tag: str, **backend) -> Path:
    r = yaml.safe_load((ROOT / "schemas/recipes/demo.yaml").read_text())
    r["backend"] = {"name": "openai", "endpoints": [{"base_url": srv.base_url, "max_in_flight": 64}], "model": model,
                    "params": {"temperature": 0.7, "max_tokens": 512}, "timeout_s": 30, "cache_dir": str(work / f"cache-{tag}"),
                    **backend}
    # The test server's prose is not about the media: held to grammar and facts (as the tests and the generation
    # bench hold it), else every pair fails coverage and is regenerated until its attempts run out.
    r["checks"] = {**(r.get("checks") or {}), "judge": "none", "content": ["grammar", "facts"]}
    r["review"] = {**(r.get("review") or {}), "compliance_bar": 0.0, "label_studio": None, "wait": False}
    path = work / f"recipe-{tag}.yaml"
    path.write_text(yaml.safe_dump(r))
    return path


def _acd(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "acd.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"acd {' '.join(args)} failed:\n{r.stderr[-3000:]}")
    return r


def _usd(usage: dict, model: str) -> float:
    return cost.price_for(model).usd(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)) or 0.0


def _pairs(out: Path) -> list:
    return pq.read_table(str(out / "pairs")).sort_by("pair_id").select(["pair_id", "chosen", "rejected"]).to_pylist()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="gpt-4o,gpt-4o-mini")
    ap.add_argument("--workdir", default="/tmp/acd-bench-cost")
    a = ap.parse_args()
    work = Path(a.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rows = []
    for model in a.models.split(","):
        with OpenAITestServer(usage_rule=model, median=0.002, slots=128, process=True, models={model: "bench"},
                              batch={"lines_per_s": 5000}) as srv:
            recipe = _recipe(work, srv, model, f"{model}-online")
            run_o, out_o = work / f"run-{model}-online", work / f"out-{model}-online"
            est = json.loads(_acd("estimate", "--recipe", str(recipe), "--run-dir", str(run_o), "--json").stdout)
            t0 = time.monotonic()
            _acd("build", "--recipe", str(recipe), "--run-dir", str(run_o), "--out", str(out_o))
            t_online = time.monotonic() - t0
            online = srv.stats()
            srv.reset()
            recipe_b = _recipe(work, srv, model, f"{model}-batch", mode="batch", batch={"collect_s": 1.0, "poll_s": 0.5})
            run_b, out_b = work / f"run-{model}-batch", work / f"out-{model}-batch"
            t0 = time.monotonic()
            _acd("build", "--recipe", str(recipe_b), "--run-dir", str(run_b), "--out", str(out_b))
            t_batch = time.monotonic() - t0
            batch = srv.stats()["batch"]
            same = _pairs(out_o) == _pairs(out_b)
        rows.append({"model": model, "estimate": est, "online": {"requests": online["requests"], **online["usage"],
                     "usd": _usd(online["usage"], model), "seconds": round(t_online, 1)},
                     "batch": {"requests": batch["lines_distinct"], "processed": batch["lines_processed"],
                               **batch["usage"], "usd": _usd(batch["usage"], model) * (1 - cost.batch_discount()),
                               "seconds": round(t_batch, 1)}, "same_pairs": same})
    print(f"{'model':<12} {'mode':<7} {'':<9} {'requests':>9} {'prompt tok':>12} {'compl. tok':>11} {'USD':>9}")
    for r in rows:
        e = r["estimate"]
        for mode in ("online", "batch"):
            act = r[mode]
            print(f"{r['model']:<12} {mode:<7} {'estimate':<9} {e['requests']:>9,} {e['prompt_tokens']:>12,} "
                  f"{e['completion_tokens']:>11,} {e['usd_' + mode]:>9.2f}")
            print(f"{'':<12} {'':<7} {'actual':<9} {act['requests']:>9,} {act.get('prompt_tokens', 0):>12,} "
                  f"{act.get('completion_tokens', 0):>11,} {act['usd']:>9.2f}   ({act['seconds']} s)")
        print(f"{'':<12} batch pairs == online pairs: {r['same_pairs']}; batch lines processed "
              f"{r['batch']['processed']:,} for {r['batch']['requests']:,} distinct")
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
