"""A finished build starts ACM training, which hands its checkpoint to AnyCapEval: real Prefect server."""
import json
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.prefect_server


def _runs_of(stack, flow_name: str) -> list[dict]:
    r = stack.http.post("/flow_runs/filter", json={"flows": {"name": {"any_": [flow_name]}}, "limit": 20})
    r.raise_for_status()
    return r.json()


def _wait_for_first(stack, flow_name: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = _runs_of(stack, flow_name)
        if runs:
            return runs[0]
        time.sleep(1)
    raise AssertionError(f"no {flow_name} flow run appeared\n{stack.worker_log_tail()}")


def test_build_starts_training_then_evaluation(prefect_stack, tiny_overrides, tmp_path):
    out, run = tmp_path / "out", tmp_path / "run"
    acm_dir = tmp_path / "acm"
    tiny_overrides["splits"] = {"train": 0.6, "test": 0.4}  # evaluation reads the test split
    build_id = prefect_stack.run_deployment(
        "build-acd/demo", f"out_dir={out}", f"run_dir={run}", f"overrides={json.dumps(tiny_overrides)}",
        "start_downstream=true", f"downstream_params={json.dumps({'steps': 6, 'out_dir': str(acm_dir)})}",
    )
    prefect_stack.wait(build_id, timeout=240)

    train = _wait_for_first(prefect_stack, "train-acm")
    assert train["parameters"]["dataset_dir"] == str(out.resolve())
    prefect_stack.wait(train["id"], timeout=300)
    summary = json.loads((acm_dir / "summary.json").read_text())
    assert summary["step"] == 6 and Path(summary["checkpoint"]).exists()
    assert Path(summary["checkpoint"]).is_absolute() and Path(summary["dataset"]).is_absolute()

    evaluation = _wait_for_first(prefect_stack, "anycapeval")
    assert evaluation["parameters"]["acm_ckpt"] == summary["checkpoint"]
    assert Path(evaluation["parameters"]["out_dir"]).is_absolute()
    assert Path(evaluation["parameters"]["dataset_dir"]).is_absolute()
    prefect_stack.wait(evaluation["id"], timeout=300)
    reports = list((acm_dir / "anycapeval").rglob("*.md"))
    assert reports, "anycapeval wrote no report"
