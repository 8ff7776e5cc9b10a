"""Kill-and-resume (issue 5): SIGKILL `acd build` at four points, rerun each time, and the dataset must be
byte-identical to an uninterrupted build's; no finished unit may be redone.

Kill points (each run is killed once, the next run resumes the same run directory):
  1. during ingest, once a few ingest parts exist
  2. right after plan/_DONE appears
  3. during generate, after several generate parts exist
  4. during export, once the output's pairs/ or shards/ files appear (before manifest.json)
then a last run to completion. Every part that existed when a run was killed must still be the same file
(same inode: parts are written to a temp name and renamed, so a redone unit gets a new inode), the
resumed runs' timings must show no synthesis/generation for units that were done, and the pool workers
must die with the killed driver (no orphan finishing a unit behind the next run's back).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Small but many units: 10 ingest batches of 8 items, ~50 lots of <= 16 pairs.
OVERRIDES = [
    "source.counts.image=32", "source.counts.video=16", "source.counts.audio=24", "source.batch_size=8",
    "pairs.image=216", "pairs.video=160", "pairs.audio=120", "lot_size=16",
]
PART_STAGES = ("ingest", "quarantine", "plan", "generate", "deadletter", "review", "review_decisions",
               "media_index")


def _cmd(run_dir: Path, out_dir: Path) -> list[str]:
    cmd = [sys.executable, "-m", "acd.cli", "build", "--recipe", "demo", "--out", str(out_dir),
           "--run-dir", str(run_dir)]
    for s in OVERRIDES:
        cmd += ["--set", s]
    return cmd


def _env() -> dict:
    env = dict(os.environ)
    env["ACD_WORKERS"] = "2"  # exercise the process pool (and its die-with-the-driver rule)
    return env


def _parts(run_dir: Path, stage: str) -> list[Path]:
    return sorted((run_dir / stage).glob("*/part-*.parquet"))


# A unit writes its companion part first and its done-marker last (pipeline.ingest/generate/review): a
# companion whose marker is missing belongs to a unit in flight at the kill, which the resume redoes.
DONE_MARKER = {"quarantine": "ingest", "deadletter": "generate", "review": "review_decisions"}


def _snapshot(run_dir: Path) -> dict[str, int]:
    """Every part of a finished unit (and the plan marker) -> inode."""
    snap = {}
    for stage in PART_STAGES:
        for p in _parts(run_dir, stage):
            marker = DONE_MARKER.get(stage)
            if marker and not (run_dir / marker / p.parent.name / p.name).exists():
                continue
            snap[str(p.relative_to(run_dir))] = p.stat().st_ino
    done = run_dir / "plan" / "_DONE"
    if done.exists():
        snap["plan/_DONE"] = done.stat().st_ino
    return snap


def _descendants(pid: int) -> list[int]:
    import psutil

    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _alive(pids: list[int]) -> list[int]:
    import psutil

    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def _run_until(run_dir: Path, out_dir: Path, condition, log: Path, timeout: float = 120.0) -> dict:
    """Start a build; SIGKILL the driver (only the driver, like the OOM killer would) once condition()
    holds. Returns what happened."""
    with open(log, "ab") as fh:
        proc = subprocess.Popen(_cmd(run_dir, out_dir), cwd=ROOT, env=_env(), stdout=fh, stderr=subprocess.STDOUT)
        t0 = time.monotonic()
        workers: list[int] = []
        while proc.poll() is None:
            workers = _descendants(proc.pid) or workers
            if condition():
                workers = _descendants(proc.pid) or workers
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                # the pool's workers follow the driver (PR_SET_PDEATHSIG), they must not finish units later
                deadline = time.monotonic() + 10
                while _alive(workers) and time.monotonic() < deadline:
                    time.sleep(0.05)
                return {"killed": True, "orphans": _alive(workers), "seconds": time.monotonic() - t0}
            if time.monotonic() - t0 > timeout:
                proc.kill()
                raise AssertionError(f"build did not reach the kill point in {timeout}s; see {log}")
            time.sleep(0.01)
        return {"killed": False, "rc": proc.returncode, "seconds": time.monotonic() - t0}


def _timings(run_dir: Path) -> dict:
    return json.loads((run_dir / "timings.json").read_text())


def _output_files(out_dir: Path) -> dict[str, bytes]:
    manifest = json.loads((out_dir / "manifest.json").read_text())
    files = {f["path"]: (out_dir / f["path"]).read_bytes() for f in manifest["files"]}
    files["manifest.json"] = (out_dir / "manifest.json").read_bytes()
    return files


@pytest.mark.timeout(300)
def test_kill_and_resume_matches_uninterrupted_build(tmp_path):
    pytest.importorskip("psutil")
    run_dir, out_dir = tmp_path / "run", tmp_path / "out"
    log = tmp_path / "builds.log"
    n_batches = 10

    def ingest_midway():
        n = len(_parts(run_dir, "ingest"))
        return 3 <= n < n_batches

    def plan_done():
        return (run_dir / "plan" / "_DONE").exists()

    def generate_midway():
        return len(_parts(run_dir, "generate")) >= 8

    def export_midway():
        return not (out_dir / "manifest.json").exists() and (
            any((out_dir / "pairs").glob("*.parquet")) or any((out_dir / "shards").glob("*/*.tar")))

    kills = [("ingest", ingest_midway), ("plan", plan_done), ("generate", generate_midway), ("export", export_midway)]
    history = []
    for name, cond in kills:
        before = _snapshot(run_dir) if run_dir.exists() else {}
        res = _run_until(run_dir, out_dir, cond, log)
        assert res["killed"], f"the build finished before the {name} kill point: {res}; see {log}"
        assert not res["orphans"], f"pool workers {res['orphans']} outlived the killed driver ({name})"
        after = _snapshot(run_dir)
        # Nothing that was finished before this run was rewritten by it.
        rewritten = sorted(k for k, ino in before.items() if after.get(k) != ino)
        assert not rewritten, f"run killed at {name} rewrote finished parts: {rewritten[:5]}"
        history.append((name, after))

    # By the export kill every lot had been generated and reviewed.
    lots = (run_dir / "plan" / "_DONE").read_text().split()
    assert len(lots) >= 40 and len(_parts(run_dir, "review")) == len(lots)

    # What a writer killed mid-file leaves (the export kill may or may not have landed mid-tar): the resume
    # removes dead writers' temp files, in the output and in the run directory.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out_dir / "shards" / "train").mkdir(parents=True, exist_ok=True)
    (out_dir / "shards" / "train" / f".audio-000000.tar.{dead.pid}.tmp").write_bytes(b"x" * 10000)
    from acd import atomicio

    mine = atomicio.tmp_path(run_dir / "generate" / lots[0] / "part-0.parquet").name
    (run_dir / "generate" / lots[0] / mine.replace(f".{os.getpid()}@", f".{dead.pid}@")).write_bytes(b"y")

    before = _snapshot(run_dir)
    res = _run_until(run_dir, out_dir, lambda: False, log)
    assert not res["killed"] and res["rc"] == 0, f"final resumed build failed; see {log}"
    left = [p for d in (run_dir, out_dir) for p in d.rglob("*.tmp")]
    assert not left, f"temp files of dead writers survived the resume: {left}"
    v = subprocess.run([sys.executable, "-m", "acd.cli", "validate", str(out_dir)], capture_output=True, text=True)
    assert v.returncode == 0, v.stdout[-2000:]
    after = _snapshot(run_dir)
    rewritten = sorted(k for k, ino in before.items() if after.get(k) != ino)
    assert not rewritten, f"the final run rewrote finished parts: {rewritten[:5]}"
    # Its component timings show it synthesised and generated nothing: every unit was skipped.
    t = _timings(run_dir)
    assert t["ingest"].get("source_read", 0.0) == 0.0, t
    assert t["generate"].get("backend", 0.0) == 0.0, t

    # Every part was written exactly once over the five runs: the inode recorded when it first appeared
    # (at some kill) is the one it has at the end, so only units in flight at a kill were ever redone.
    first_seen: dict[str, int] = {}
    for _, snap in history + [("final", after)]:
        for k, ino in snap.items():
            first_seen.setdefault(k, ino)
    assert {k: after[k] for k in first_seen} == first_seen

    # An uninterrupted build of the same recipe in another run directory writes the same bytes.
    ref_run, ref_out = tmp_path / "ref-run", tmp_path / "ref-out"
    res = _run_until(ref_run, ref_out, lambda: False, log)
    assert not res["killed"] and res["rc"] == 0, f"reference build failed; see {log}"
    resumed, reference = _output_files(out_dir), _output_files(ref_out)
    assert sorted(resumed) == sorted(reference)
    differing = sorted(p for p in reference if resumed[p] != reference[p])
    assert not differing, f"resumed output differs from the uninterrupted build in {differing}"
    assert len(reference) > 10  # pairs, shards, acm, card, assets, manifest
