"""build-acd through a real Prefect server + process worker: `prefect deployment run build-acd/demo`.

The session fixture (conftest.prefect_stack) runs ops.services.up on a free port with PREFECT_HOME in tmp,
exactly what `make up` does, and stops the server and the worker by PID at the end. Every test runs on both of
Prefect's databases: SQLite (prefect_stack) and PostgreSQL (prefect_stack_pg, one server per session).
"""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

STAGES = ("ingest", "plan", "generate", "review", "export")
pytestmark = [pytest.mark.prefect_server, pytest.mark.timeout(240)]


@pytest.fixture(params=["sqlite", "postgres"])
def prefect_stack(request):
    """The session's stack on SQLite or on PostgreSQL (shadows conftest's prefect_stack in this module)."""
    return request.getfixturevalue("prefect_stack_pg" if request.param == "postgres" else "prefect_stack_sqlite")


def _params(out: Path, run: Path, overrides: dict) -> list[str]:
    return [f"out_dir={out}", f"run_dir={run}", f"overrides={json.dumps(overrides)}"]


def test_deployments_applied(prefect_stack):
    info = prefect_stack.info
    r = prefect_stack.prefect("deployment", "ls")
    for ref in info["deployed"]:
        flow, name = ref.split("/")
        assert flow in r.stdout and name in r.stdout
    # Every deployment in prefect.yaml is either deployed or reported (missing entrypoint / failing import).
    from ops.services import deployment_entries

    refs = {e["ref"] for e in deployment_entries()}
    reported = set(info["deployed"]) | {s.split(" ")[0] for s in info["skipped"] + info["failed"]}
    assert refs == reported
    assert {"build-acd/demo", "build-acd/acd-300k"} <= set(info["deployed"])
    # `flow/deployment` is required by the CLI; the bare flow name is refused.
    assert prefect_stack.prefect("deployment", "run", "build-acd", check=False).returncode != 0


def test_deployment_run_builds_tiny_dataset(prefect_stack, tmp_path, tiny_overrides):
    out, run = tmp_path / "out", tmp_path / "run"
    t0 = time.monotonic()
    run_id = prefect_stack.run_deployment("build-acd/demo", *_params(out, run, tiny_overrides))
    fr = prefect_stack.wait(run_id, timeout=150)
    seconds = time.monotonic() - t0
    print(f"tiny build-acd/demo deployment run: {seconds:.1f}s (server+worker+deploy up in "
          f"{prefect_stack.info['timings']['up_s']:.1f}s)")

    # The parameters arrived as typed values (overrides as a JSON object, not a string).
    assert fr["parameters"]["overrides"] == tiny_overrides
    assert fr["parameters"]["out_dir"] == str(out)

    # The dataset is on disk, complete per its manifest.
    manifest = json.loads((out / "manifest.json").read_text())
    listed = {f["path"] for f in manifest["files"]}
    assert any(p.startswith("pairs/") and p.endswith(".parquet") for p in listed)
    for f in manifest["files"]:
        assert (out / f["path"]).stat().st_size == f["bytes"], f["path"]
    pairs = sum(pq.read_metadata(out / p).num_rows for p in listed if p.startswith("pairs/"))
    assert pairs == manifest["counts"]["pairs"] > 0
    assert not (run / "driver.lock").exists(), "the flow must release the run-dir lock"

    # Progress artifacts: one per stage, finished; the markdown report.
    arts = prefect_stack.artifacts(run_id)
    by_key = {a["key"]: a for a in arts if a.get("key")}
    for stage in STAGES:
        a = by_key.get(f"build-acd-demo-{stage}")
        assert a is not None, f"no progress artifact for {stage}: {sorted(by_key)}"
        assert a["type"] == "progress" and float(a["data"]) == pytest.approx(100.0), a
    report = by_key.get("build-acd-demo-report")
    assert report is not None and report["type"] == "markdown"
    assert "|" in report["data"] and "demo" in report["data"]


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture
def worker_guard(prefect_stack):
    """Whatever a test does to the worker, the next test finds one running."""
    yield
    from ops import services

    if not services.pid_alive(prefect_stack.info["worker_pid"]):
        prefect_stack.restart_worker()


@pytest.mark.parametrize("lose_worker", [False, True], ids=["flow-run-killed", "flow-run-and-worker-killed"])
def test_crashed_run_is_marked_and_resumed(prefect_stack, worker_guard, tmp_path, tiny_overrides, lose_worker):
    """SIGKILL the flow-run process mid-generate (its PID from <run>/driver.lock); run the deployment again.

    flow-run-killed: the process worker sees its child die and reports the run Crashed itself.
    flow-run-and-worker-killed: nothing is left to report it (a lost machine), so the run would stay RUNNING
    forever; the next run takes the run-dir lock over from the dead PID and marks the old run Crashed.
    Either way the rerun completes and redoes only the missing parts.
    """
    from ops import services

    out, run = tmp_path / "out", tmp_path / "run"
    # More, smaller lots than TINY: a wider window to kill the run mid-generate.
    overrides = {**tiny_overrides, "pairs": {"image": 60, "video": 60, "audio": 40}, "lot_size": 4}
    first = prefect_stack.run_deployment("build-acd/demo", *_params(out, run, overrides))
    prefect_stack.wait(first, until=("RUNNING",), timeout=60)

    lock = run / "driver.lock"
    gen = run / "generate"

    def generate_on_server() -> tuple[int, int]:
        """(RUNNING, COMPLETED) generate-lot task runs of the first run, as the server knows them."""
        r = prefect_stack.http.post("/task_runs/filter", json={
            "flow_runs": {"id": {"any_": [first]}}, "task_runs": {"name": {"like_": "generate-lot"}},
            "limit": 200})
        r.raise_for_status()
        types = [(t.get("state") or {}).get("type") for t in r.json() if t["name"].startswith("generate-lot")]
        return types.count("RUNNING"), types.count("COMPLETED")

    def parts() -> int:
        return len(list(gen.glob("*/part-*.parquet")))

    # Task-run states reach the server as events, late (under load, on PostgreSQL here, by several lots), so a
    # lot the server shows RUNNING may be done already; killing then leaves nothing RUNNING to mark. A lot
    # writes its part before it completes, so of the lots the server shows RUNNING at most (parts on disk,
    # counted after asking) - (COMPLETED on the server) are done; when it shows more RUNNING than that, one is
    # really in flight: kill. Under load that moment is often the first lots' start-up (no part on disk yet).
    t0 = time.monotonic()
    deadline, seen = t0 + 90, [("s", "RUNNING", "COMPLETED", "parts")]
    while time.monotonic() < deadline:
        if lock.exists():
            running, completed = generate_on_server()
            done = parts()
            if seen[-1][1:] != (running, completed, done):
                seen.append((round(time.monotonic() - t0, 2), running, completed, done))
            if running > done - completed:
                break
        time.sleep(0.05)
    else:
        pytest.fail(f"no generate-lot seen in flight; seen: {seen[:60]}\n"
                    f"{prefect_stack.worker_log_tail()}")
    owner = json.loads(lock.read_text())
    assert owner["flow_run_id"] == first and owner["driver"] == "prefect"
    if lose_worker:
        _kill(prefect_stack.info["worker_pid"])
    _kill(owner["pid"])
    done_before = {p: p.stat().st_mtime_ns for p in gen.glob("*/part-*.parquet")}
    lots = (run / "plan" / "_DONE").read_text().split()
    assert len(done_before) < len(lots), "the kill must land mid-generate"

    if lose_worker:
        time.sleep(2)
        assert prefect_stack.state(first) == "RUNNING", "with the worker gone nobody reports the crash"
        prefect_stack.restart_worker()
    else:
        prefect_stack.wait(first, until=("CRASHED",), timeout=60)

    second = prefect_stack.run_deployment("build-acd/demo", *_params(out, run, overrides))
    prefect_stack.wait(second, timeout=150)

    old = prefect_stack.flow_run(first)
    assert old["state"]["type"] == "CRASHED", old["state"]
    if lose_worker:
        assert "resumed by flow run" in old["state"]["message"] and second in old["state"]["message"]
    # The killed run's in-flight task runs do not stay RUNNING forever: the rerun marked them Crashed.
    r = prefect_stack.http.post("/task_runs/filter", json={"flow_runs": {"id": {"any_": [first]}}, "limit": 200})
    r.raise_for_status()
    states = {}
    for tr in r.json():
        states.setdefault(tr["state"]["type"], []).append(tr["name"])
    assert not set(states) & {"RUNNING", "PENDING", "SCHEDULED"}, states
    assert any(n.startswith("generate-lot") for n in states.get("CRASHED", [])), states
    # Resume by parts: the lots finished before the kill were not redone.
    for p, mtime in done_before.items():
        assert p.stat().st_mtime_ns == mtime, f"{p} was rewritten"
    assert len(list(gen.glob("*/part-*.parquet"))) == len(lots)
    assert (out / "manifest.json").exists()
    assert not lock.exists()
    assert services.pid_alive(prefect_stack.info["worker_pid"])


def test_deploy_skips_missing_entrypoints(prefect_stack, tmp_path):
    """`make up` deploys what exists and reports the rest (a flow file not written yet must not block it)."""
    from ops import services

    (tmp_path / "flows").symlink_to(services.PROJECT_DIR / "flows")
    (tmp_path / "prefect.yaml").write_text(
        "name: skip-test\nprefect-version: 3.8.8\nbuild: null\npush: null\n"
        "pull:\n  - prefect.deployments.steps.set_working_directory:\n      directory: \"{{ $ACD_PROJECT_DIR }}\"\n"
        "deployments:\n"
        "  - {name: skip-test, entrypoint: 'flows/build_acd.py:build_acd', work_pool: {name: acd-local}}\n"
        "  - {name: skip-test, entrypoint: 'flows/not_written_yet.py:not_written_yet', work_pool: {name: acd-local}}\n"
    )
    env = {**prefect_stack.env, "ACD_PROJECT_DIR": str(tmp_path)}
    result = services.deploy(env)
    assert result["deployed"] == ["build-acd/skip-test"]
    assert result["skipped"] == ["not-written-yet/skip-test (no file flows/not_written_yet.py)"]
    assert result["failed"] == []
    r = prefect_stack.http.get("/deployments/name/build-acd/skip-test")
    assert r.status_code == 200
    assert r.json()["pull_steps"][0]["prefect.deployments.steps.set_working_directory"]["directory"] == str(tmp_path)
