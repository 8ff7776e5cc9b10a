"""Bytes independent of thread count: one recipe built with 1 and with 2 torch/OMP threads is identical.

The offline judge's embeddings are the only multi-threaded arithmetic in a grounded build; judge_score
is stored to 6 decimals, so a last-bit difference in a cosine can change the dataset's bytes. The judge
encodes with one intra-op thread whatever the process's setting (acd.checks.judge._one_thread).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(600)

SETS = ["source.counts.image=6", "source.counts.video=4", "source.counts.audio=4", "pairs.image=40",
        "pairs.video=40", "pairs.audio=20", "lot_size=16", "checks.judge=offline", "checks.judge_sample_rate=1.0"]


def _build(tmp: Path, threads: int) -> Path:
    out = tmp / f"out-{threads}"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "ACD_WORKERS": "1"}
    args = [sys.executable, "-m", "acd.cli", "build", "--recipe", "demo", "--out", str(out),
            "--run-dir", str(tmp / f"run-{threads}")]
    for s in SETS:
        args += ["--set", s]
    res = subprocess.run(args, env=env, capture_output=True, text=True, timeout=500)
    assert res.returncode == 0, res.stderr[-4000:]
    return out


def test_one_and_two_threads_build_identical_bytes(tmp_path):
    one, two = _build(tmp_path, 1), _build(tmp_path, 2)
    manifest = json.loads((one / "manifest.json").read_text())
    assert (one / "manifest.json").read_bytes() == (two / "manifest.json").read_bytes()
    differ = [f["path"] for f in manifest["files"] if (one / f["path"]).read_bytes() != (two / f["path"]).read_bytes()]
    assert not differ, differ
    import pyarrow.dataset as ds

    scores = ds.dataset(str(one / "pairs"), format="parquet").to_table(columns=["judge_score"]).column(0)
    assert scores.null_count < len(scores)  # the judge really ran (sample rate 1.0)


def test_judge_encodes_single_threaded_and_restores_threads():
    import numpy as np
    import torch

    from acd.checks.judge import OfflineJudge

    texts = [f"a red cube {i} left of a blue sphere while the camera pans right " * (1 + i % 5) for i in range(48)]
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        two = OfflineJudge().embed(texts)
        assert torch.get_num_threads() == 2  # the caller's setting is back
        torch.set_num_threads(1)
        one = OfflineJudge().embed(texts)
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(one, two)
