"""The run-directory lock (an OS lock) and the atomic-write helper's temp files.

Two drivers started at the same instant: exactly one proceeds, the other is told who holds the run and
since when; a SIGKILLed holder's lock is taken over and its record returned (the flow marks that run
Crashed); temp files of dead writers are swept, live writers' are not.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from acd import atomicio, runlock

RACER = textwrap.dedent("""
    import sys, time
    from acd import runlock
    run_dir, start_at = sys.argv[1], float(sys.argv[2])
    while time.time() < start_at:
        pass
    try:
        runlock.acquire(run_dir, driver="cli")
    except runlock.RunLocked as exc:
        print("LOCKED", exc, flush=True)
        sys.exit(3)
    print("GOT", flush=True)
    time.sleep(1.0)  # hold it while the other one tries
    runlock.release(run_dir)
""")


def test_simultaneous_drivers_exactly_one_proceeds(tmp_path):
    """Ten rounds of two processes calling acquire at the same wall-clock instant."""
    for round_ in range(10):
        run_dir = tmp_path / f"run-{round_}"
        start_at = time.time() + 1.5  # both interpreters are up and spinning by then
        procs = [subprocess.Popen([sys.executable, "-c", RACER, str(run_dir), str(start_at)],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
        outs = [(p.wait(timeout=30), p.stdout.read()) for p in procs]
        got = [o for rc, o in outs if rc == 0 and o.startswith("GOT")]
        locked = [o for rc, o in outs if rc == 3]
        assert len(got) == 1 and len(locked) == 1, (round_, outs)
        assert "is locked by pid" in locked[0] and " since " in locked[0], locked[0]
        assert not (run_dir / "driver.lock").exists(), "a clean release removes the lock file"


def test_cli_build_refuses_a_locked_run_dir_quickly(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from acd import runlock
        runlock.acquire({str(tmp_path / 'run')!r}, driver="cli")
        print("HELD", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "HELD"
        t0 = time.monotonic()
        res = subprocess.run([sys.executable, "-m", "acd.cli", "build", "--recipe", "demo", "--out", str(tmp_path / "out"),
                              "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
        took = time.monotonic() - t0
        assert res.returncode == 3, res.stderr[-2000:]
        assert f"is locked by pid {holder.pid}" in res.stderr and "since" in res.stderr, res.stderr
        assert "Traceback" not in res.stderr
        assert not (tmp_path / "out").exists() and not (tmp_path / "run" / "ingest").exists()
        print(f"refused in {took:.1f}s")
    finally:
        holder.kill()
        holder.wait()


def test_killed_holder_is_taken_over_with_its_record(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from acd import runlock
        runlock.acquire({str(tmp_path)!r}, driver="prefect", flow_run_id="abc")
        print("HELD", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "HELD"
    with pytest.raises(runlock.RunLocked, match=f"pid {holder.pid}.*flow run abc"):
        runlock.acquire(tmp_path, driver="cli")
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    stale = runlock.acquire(tmp_path, driver="cli")
    try:
        assert stale["pid"] == holder.pid and stale["flow_run_id"] == "abc"
        assert json.loads((tmp_path / "driver.lock").read_text())["pid"] == os.getpid()
        assert runlock.acquire(tmp_path, driver="cli") is None  # re-entrant in the holding process
    finally:
        runlock.release(tmp_path)
    assert not (tmp_path / "driver.lock").exists()
    assert runlock.acquire(tmp_path) is None  # a clean release leaves nothing stale
    runlock.release(tmp_path)


def test_temp_names_are_unique_and_dead_writers_are_swept(tmp_path):
    target = tmp_path / "media" / "ab" / "x.png"
    names = {atomicio.tmp_path(target).name for _ in range(50)}
    assert len(names) == 50 and all(n.startswith(".x.png.") and n.endswith(".tmp") for n in names)

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    target.parent.mkdir(parents=True)
    mine = atomicio.tmp_path(target)
    mine.write_bytes(b"a live writer's half file")
    dead_new = target.with_name(mine.name.replace(f".{os.getpid()}@", f".{dead.pid}@"))
    dead_new.write_bytes(b"x")
    legacy = tmp_path / "shards" / "train" / f".audio-000000.tar.{dead.pid}.tmp"  # the debris name
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"y" * 1000)
    foreign = target.with_name(f".x.png.{os.getpid()}@some-other-host.0123abcd.tmp")
    foreign.write_bytes(b"z")
    old_foreign = target.with_name(".x.png.1@some-other-host.0123abcd.tmp")
    old_foreign.write_bytes(b"z")
    os.utime(old_foreign, (time.time() - 7200, time.time() - 7200))
    keep = tmp_path / "shards" / "train" / "audio-000000.tar"
    keep.write_bytes(b"data")

    removed = set(atomicio.sweep_dead_temps(tmp_path / "media", tmp_path / "shards"))
    assert removed == {dead_new, legacy, old_foreign}
    assert mine.exists() and foreign.exists() and keep.exists()

    atomicio.write_bytes(target, b"png")
    assert target.read_bytes() == b"png"
    assert sorted(p.name for p in target.parent.iterdir()) == sorted([mine.name, foreign.name, "x.png"])
