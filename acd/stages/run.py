"""The stage list and the driver: STAGES in their order, call_unit (how any executor runs a unit),
run_stages and drive."""
from __future__ import annotations

import time
from typing import Any, Callable

from acd.stages.base import CPU, Executor, Outcome, Progress, Stage, StageTimer, run_unit
from acd.stages.dedup import Dedup
from acd.stages.export import Export
from acd.stages.generate import Generate
from acd.stages.ingest import Ingest
from acd.stages.plan import Plan
from acd.stages.regenerate import Regenerate
from acd.stages.review import Rereview, Review

STAGES: tuple[Stage, ...] = (Ingest(), Dedup(), Plan(), Generate(), Review(), Regenerate(), Rereview(), Export())


def stage(name: str) -> Stage:
    return next(s for s in STAGES if s.name == name)


def call_unit(build, stage_name: str, unit: str | None = None, progress: Progress | None = None) -> Outcome:
    """Run one unit of a stage (unit None: the once-stage itself) wherever the executor put it; every
    executor calls this, with the stage's name (a worker finds the stage object by it)."""
    return run_unit(stage(stage_name), build, unit, progress)


def run_stages(build, executor: Executor, progress: Progress, stop_after: str | None = None) -> dict[str, Any]:
    """Every stage of STAGES, in order, its units where `executor` puts them; then build.finish (timings.json
    and the report). Returns {stage name: result} plus "seconds" and "components". stop_after: the last stage
    to run (`acd estimate` stops after plan: nothing before generate sends a model request); no report then."""
    timer = StageTimer()
    results: dict[str, Any] = {}
    stages = [st for st in STAGES if st.active(build)]
    try:
        for k, st in enumerate(stages):
            t0 = time.perf_counter()
            units = st.units(build, results)
            if units == []:  # nothing to do this time (no lot was rejected): the stage leaves no result
                _release_if_done(executor, build, stages[k + 1:])
                continue
            if units is None:
                if st.reported:
                    progress(st.name, 0, 1)
                result, dt, _ = executor.run_once(build, st, progress)
                if isinstance(result, dict):
                    timer.add_components(st.name, result.pop("timings", None))
                # The engine's own seconds, as for unit stages: the rest of the stage's wall is the driver's.
                timer.add_components(st.name, {"unit_seconds": dt, "workers": 1.0})
                if st.reported:
                    progress(st.name, 1, 1)
            else:
                st.before(build)
                result = _run_units(build, executor, st, units, st.where(build), timer, progress)
            if st.reported:
                timer.add(st.name, time.perf_counter() - t0)
            result = st.after(build, executor, result)
            results[st.name] = result
            if st.replaces is not None:
                results[st.replaces] = result
            _release_if_done(executor, build, stages[k + 1:])
            if st.name == stop_after:
                return {**results, "seconds": timer.seconds, "components": timer.components}
    finally:
        executor.close()
    build.finish(timer.seconds, timer.components)
    return {**results, "seconds": timer.seconds, "components": timer.components}


def _release_if_done(executor: Executor, build, later: list[Stage]) -> None:
    if not any(st.unit and st.where(build) == CPU for st in later):
        executor.release()


def drive(build, executor: Executor, progress: Progress, lock: Callable[[], Any] | None = None,
          stop_after: str | None = None) -> dict[str, Any]:
    """The one driver, for `acd build` and the build-acd flow: take the run directory's lock (`lock`, else
    the CLI's), remove what killed writers left mid-file (only the lock holder may), run every stage,
    release the lock."""
    from acd import runlock
    from acd.atomicio import sweep_dead_temps

    if lock is None:
        runlock.acquire(build.run_dir, driver="cli")
    else:
        lock()
    try:
        sweep_dead_temps(*[d for d in (build.run_dir, build.out_dir) if d is not None])
        return run_stages(build, executor, progress, stop_after)
    finally:
        runlock.release(build.run_dir)


def _run_units(build, executor: Executor, st: Stage, units: list[str], where: str, timer: StageTimer,
               progress: Progress) -> list[Any]:
    busy = 0.0
    workers: set[str] = set()
    finished = 0
    progress(st.name, 0, len(units))

    def on_done(i: int, outcome: Outcome) -> None:
        nonlocal busy, finished
        result, dt, worker = outcome
        busy += dt
        workers.add(worker)
        if isinstance(result, dict):
            timer.add_components(st.name, result.pop("timings", None))
        finished += 1
        progress(st.name, finished, len(units))

    outcomes = executor.run_units(build, st, units, where, on_done)
    timer.add_components(st.name, {"unit_seconds": busy, "workers": float(max(len(workers), 1))})
    return [o[0] for o in outcomes]
