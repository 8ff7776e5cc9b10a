"""One recipe, three drivers, the same bytes: `acd build`'s path (acd.pipeline.run_build, one process and its
pool), the build-acd flow on its thread task runner, and the flow's lot tasks on a Dask cluster (prefect-dask;
several machines). All three walk acd.stages.STAGES; timings.json has the same shape under each.

The task runner is chosen when flows/build_acd.py is imported, from ACD_DASK_WORKERS / ACD_DASK_ADDRESS, so
the Dask build runs in a subprocess with that env, reporting to the session's real Prefect server.
The offline judge is on (every lot judges a few pairs): a Dask worker's nanny runs it with OMP_NUM_THREADS=1,
the single-process reference with the process's default threads, and the bytes must still agree.
"""
from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dataset_files import manifest_files  # tests/ is on sys.path (conftest)

pytestmark = [pytest.mark.prefect_server, pytest.mark.timeout(400)]

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, os, sys
from flows.build_acd import build_acd
from prefect_dask import DaskTaskRunner
from prefect.task_runners import ThreadPoolTaskRunner
want = DaskTaskRunner if os.environ.get("ACD_DASK_WORKERS") or os.environ.get("ACD_DASK_ADDRESS") else ThreadPoolTaskRunner
assert isinstance(build_acd.task_runner, want), build_acd.task_runner
result = build_acd(recipe="demo", out_dir=sys.argv[1], run_dir=sys.argv[2], overrides=json.loads(sys.argv[3]))
print("RESULT " + json.dumps(result))
"""


def test_build_pickles(tmp_path, tiny_overrides):
    from acd.pipeline import Build
    from acd.recipe import load_recipe

    build = Build(load_recipe("demo", tiny_overrides), tmp_path / "run", tmp_path / "out")
    _ = build.source  # a live source (and, in a real build, backend and judge) must not travel to workers
    clone = pickle.loads(pickle.dumps(build))
    assert clone._source is None and clone._backend is None and clone._judge is None
    assert clone.recipe == build.recipe and clone.run_dir == build.run_dir


@pytest.fixture(scope="module")
def reference_build(tmp_path_factory, tiny_recipe):
    """The same tiny recipe built by acd.pipeline.run_build in this process (no Prefect, no Dask)."""
    import copy

    from acd.pipeline import run_build

    tmp = tmp_path_factory.mktemp("reference")
    overrides = copy.deepcopy(tiny_recipe)
    overrides["checks"] = {"judge": "offline", "judge_sample_rate": 0.0, "judge_min_per_lot": 2}
    t0 = time.monotonic()
    ref = run_build("demo", tmp / "out", run_dir=tmp / "run", overrides=overrides)
    print(f"single-process build {time.monotonic() - t0:.1f}s")
    return {"out": tmp / "out", "run": tmp / "run", "lots": ref["lots"], "overrides": overrides}


def _dask_build(env: dict, tmp_path: Path, overrides: dict, during=None) -> tuple[dict, str, float]:
    """The flow in a subprocess; `during(proc)` (optional) runs while it does, e.g. to kill a worker."""
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path / "dask-out"), str(tmp_path / "dask-run"),
                             json.dumps(overrides)], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    if during is not None:
        during(proc)
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    res = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    seconds = time.monotonic() - t0
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-6000:]
    result = json.loads(next(ln for ln in res.stdout.splitlines() if ln.startswith("RESULT "))[7:])
    return result, log, seconds


def _assert_same_bytes(a_out: Path, b_out: Path) -> None:
    a, b = manifest_files(a_out), manifest_files(b_out)
    assert sorted(a) == sorted(b)
    differ = [p for p in a if a[p] != b[p]]
    assert not differ, f"files differ between the flow/Dask and the single-process build: {differ[:10]}"
    assert len(a) > 10


def _timings_shape(run: Path) -> dict:
    t = json.loads((run / "timings.json").read_text())
    return {stage: sorted(v) if isinstance(v, dict) else "seconds" for stage, v in t.items()}


def test_flow_build_matches_single_process(prefect_stack, tmp_path, reference_build):
    """The flow on its default thread task runner: the CLI's bytes, and timings.json in the CLI's shape."""
    env = {k: v for k, v in prefect_stack.env.items() if not k.startswith("ACD_DASK_")}
    result, log, seconds = _dask_build(env, tmp_path, reference_build["overrides"])
    print(f"flow (thread task runner) build {seconds:.1f}s incl. interpreter start")
    assert "LocalCluster" not in log
    assert result["lots"] == reference_build["lots"] > 2
    _assert_same_bytes(tmp_path / "dask-out", reference_build["out"])
    assert _timings_shape(tmp_path / "dask-run") == _timings_shape(reference_build["run"])


def test_dask_local_cluster_build_matches_single_process(prefect_stack, tmp_path, reference_build):
    """ACD_DASK_WORKERS=2: prefect-dask starts a LocalCluster of 2 worker processes for the flow run."""
    env = dict(prefect_stack.env)
    env.pop("ACD_DASK_ADDRESS", None)
    env["ACD_DASK_WORKERS"] = "2"
    result, log, seconds = _dask_build(env, tmp_path, reference_build["overrides"])
    print(f"dask LocalCluster (2 workers) build {seconds:.1f}s incl. interpreter and cluster start")
    assert "LocalCluster" in log, log[-3000:]
    assert result["lots"] == reference_build["lots"] > 2
    _assert_same_bytes(tmp_path / "dask-out", reference_build["out"])
    assert _timings_shape(tmp_path / "dask-run") == _timings_shape(reference_build["run"])
    timings = json.loads((tmp_path / "dask-run" / "timings.json").read_text())
    assert timings["generate"]["workers"] == 2  # the lots ran in both Dask worker processes


def test_dask_existing_scheduler_build_matches_single_process(prefect_stack, tmp_path, reference_build):
    """ACD_DASK_ADDRESS: a scheduler and two workers started apart from the flow (another cwd, as on other
    machines, where the project's flows/ folder is not importable); the lot tasks run on those workers.
    One worker is SIGKILLed halfway through generate (a lost machine): its lots run again on the other, and
    the build completes with the single-process build's bytes."""
    from ops import services

    cluster_dir = tmp_path / "cluster"
    cluster_dir.mkdir()
    sched_file = cluster_dir / "scheduler.json"
    env = {k: v for k, v in prefect_stack.env.items() if not k.startswith("ACD_DASK_")}
    dask = [str(Path(sys.executable).with_name("dask"))]
    procs = []
    try:
        with open(cluster_dir / "scheduler.log", "wb") as log:
            procs.append(subprocess.Popen(dask + ["scheduler", "--host", "127.0.0.1", "--port", "0",
                                                  "--no-dashboard", "--scheduler-file", str(sched_file)],
                                          cwd=cluster_dir, env=env, stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 60
        while not sched_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(sched_file.read_text())["address"]
        for i in range(2):
            with open(cluster_dir / f"worker-{i}.log", "wb") as log:
                procs.append(subprocess.Popen(dask + ["worker", address, "--nthreads", "1", "--no-dashboard",
                                                      "--host", "127.0.0.1", "--name", f"w{i}"],
                                              cwd=cluster_dir, env=env, stdout=log, stderr=subprocess.STDOUT))
        killed = {}

        def kill_one_worker_halfway(flow_proc):
            gen = tmp_path / "dask-run" / "generate"
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and flow_proc.poll() is None:
                done = len(list(gen.glob("*/part-*.parquet")))
                busy = [i for i in range(2) if "generate-lot" in
                        (cluster_dir / f"worker-{i}.log").read_text(errors="replace")]
                if done >= 3 and busy:
                    import psutil

                    victim = procs[1 + busy[0]]  # procs[0] is the scheduler
                    # A lost machine: the nanny and its worker process go together.
                    tree = [victim.pid] + [c.pid for c in psutil.Process(victim.pid).children(recursive=True)]
                    for pid in tree:
                        os.kill(pid, signal.SIGKILL)
                    victim.wait()
                    killed.update(worker=busy[0], parts_before=done)
                    return
                time.sleep(0.05)

        result, log, seconds = _dask_build({**env, "ACD_DASK_ADDRESS": address}, tmp_path,
                                           reference_build["overrides"], during=kill_one_worker_halfway)
        print(f"dask existing-scheduler (2 workers, one SIGKILLed after {killed.get('parts_before')} of "
              f"{reference_build['lots']} lots) build {seconds:.1f}s")
        assert "LocalCluster" not in log
        assert killed and killed["parts_before"] < reference_build["lots"], (killed, "the kill must land mid-generate")
        survivor = 1 - killed["worker"]
        worker_logs = [(cluster_dir / f"worker-{i}.log").read_text(errors="replace") for i in range(2)]
        assert worker_logs[survivor].count("generate-lot") > 0, worker_logs[survivor][-3000:]
        assert result["lots"] == reference_build["lots"]
        _assert_same_bytes(tmp_path / "dask-out", reference_build["out"])
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        assert not any(services.pid_alive(p.pid) for p in procs)


# review.on_reject=regenerate with a near-duplicate bar no lot with a near-duplicate clears (max_duplicate_share
# 0, Jaccard >= 0.3, one attempt per pair so the generator does not heal them first): of this recipe's 27
# lots, 2 are rejected and regenerated (then accepted), so the build exports and has regenerations to place.
REGENERATE = {
    "source": {"counts": {"image": 6, "video": 4, "audio": 4}},
    "pairs": {"image": 54, "video": 39, "audio": 20},
    "lot_size": 16,
    "checks": {"judge": "offline", "judge_sample_rate": 0.0, "judge_min_per_lot": 2, "near_duplicate_threshold": 0.3,
               "max_attempts": 1},
    "review": {"max_duplicate_share": 0.0, "on_reject": "regenerate"},
}

STATE_SCRIPT = """
import json, sys
from flows.build_acd import build_acd
state = build_acd(recipe="demo", out_dir=sys.argv[1], run_dir=sys.argv[2], overrides=json.loads(sys.argv[3]),
                  return_state=True)
print("FLOW_RUN " + str(state.state_details.flow_run_id))
print("RESULT " + json.dumps(state.result()))
"""


def test_dask_build_regenerates_on_the_workers_with_the_local_bytes(prefect_stack, tmp_path):
    """Regeneration is a stage like generate: its lots are `regenerate-lot` tasks on the Dask workers, and the
    dataset is the CLI build's, byte for byte."""
    from acd.pipeline import run_build

    ref = run_build("demo", tmp_path / "cli-out", run_dir=tmp_path / "cli-run", overrides=REGENERATE)
    redone = sorted(p.name for p in (tmp_path / "cli-run" / "superseded").iterdir())
    assert redone, "the recipe must reject some lots (else there is nothing to regenerate)"
    assert ref["lots"] > len(redone)

    env = dict(prefect_stack.env)
    env.pop("ACD_DASK_ADDRESS", None)
    env["ACD_DASK_WORKERS"] = "2"
    res = subprocess.run([sys.executable, "-c", STATE_SCRIPT, str(tmp_path / "dask-out"), str(tmp_path / "dask-run"),
                          json.dumps(REGENERATE)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-6000:]
    assert "LocalCluster" in log, log[-3000:]
    flow_run = next(ln for ln in res.stdout.splitlines() if ln.startswith("FLOW_RUN "))[9:]
    assert sorted(p.name for p in (tmp_path / "dask-run" / "superseded").iterdir()) == redone

    # The task runs: one regenerate-lot per rejected lot, completed, beside the generate-lot ones.
    runs = prefect_stack.http.post("/task_runs/filter", json={"flow_runs": {"id": {"any_": [flow_run]}},
                                                              "limit": 200}).json()
    names = [r["name"] for r in runs]
    regen = [r for r in runs if r["name"].startswith("regenerate-lot")]
    assert len(regen) == len(redone), names
    assert all(r["state_type"] == "COMPLETED" for r in regen), [(r["name"], r["state_type"]) for r in regen]
    assert sum(n.startswith("generate-lot") for n in names) == ref["lots"]
    # ... on the Dask workers (timings.json counts the processes that ran each stage's units).
    timings = json.loads((tmp_path / "dask-run" / "timings.json").read_text())
    assert timings["regenerate"]["workers"] >= 1 and timings["generate"]["workers"] == 2
    _assert_same_bytes(tmp_path / "dask-out", tmp_path / "cli-out")
