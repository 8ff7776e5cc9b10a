"""The build's stages, in order: defined here once, for every driver.

    ingest (per source batch) → plan → generate (per lot) → review (per lot)
    → regenerate (per rejected lot; review.on_reject=regenerate) → rereview (per lot) → export
    → finish (timings.json, report.html)

A stage is a small object (Stage): its unit kind, where its units may run (CPU, IO or DRIVER, below), what
it reads and writes in the run directory, and its hooks (before, after). The work itself is the Build's
(acd.pipeline: the run's context, its recipe, store and backends). `drive` is the one driver (lock, sweep,
run_stages, unlock) of the CLI and the flow; `run_stages` walks STAGES and hands each stage's units to an
Executor, which decides only *where* units run, never what runs or in which order (datatrove's
PipelineStep / PipelineExecutor split):

- acd.local_executor.LocalExecutor (`acd build`): this process, a process pool, or threads;
- flows/build_acd.PrefectExecutor (the build-acd flow): one Prefect task per unit through the flow's
  task runner (threads, or Dask workers with ACD_DASK_WORKERS / ACD_DASK_ADDRESS).

Both submit through `windowed`, so a driver never holds more than a window of units in flight. Prefect-free;
the Build is duck-typed here (acd.pipeline imports this module, not the other way round).
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

Progress = Callable[[str, int, int], None]
# A unit's outcome, whoever ran it: (the Build method's result, its seconds, unit_worker() of its process).
Outcome = tuple[Any, float, str]

# Where a stage's units may run; each executor maps these to what it has.
CPU = "cpu"        # local CPU work (synthesising media, the grounded writer): worker processes
IO = "io"          # waits on a model endpoint: many units at once on threads of one process (one backend loop)
DRIVER = "driver"  # one after another where the driver runs them (cheap; or one client must do it)


def _ingest_where(build) -> str:
    # A Hugging Face dataset streams from one reader; the other sources read files any worker can open.
    return CPU if build.recipe.source.kind in ("synthetic", "folder", "manifest") else DRIVER


def _generate_where(build) -> str:
    # Model backends are I/O-bound and async inside one process; a pool would multiply their per-process
    # in-flight limits and rate pacing (openai) or load the model once per worker (vllm).
    if build.recipe.backend.capabilities.cpu_bound:
        return CPU
    return IO if build.concurrent_lots else DRIVER


class Stage:
    """One stage of the build: a declared unit kind, where its units may run, what it reads and writes.

    A unit stage lists its units (`units`) and runs one (`run`) wherever the executor puts it: the driver,
    a pool worker, a Dask worker. A once-stage (`units` returns None) runs `run_once` where the executor
    runs once-stages. Stages are stateless objects found by name (`stage(name)`), so a unit travels to a
    worker as (build, stage name, unit)."""
    name: str = ""               # progress key, timings.json key, how a worker finds the stage
    unit: str = ""               # what one unit is: "batch", "lot", or "" for a once-stage
    task: str | None = None      # its name as an orchestrator task (Prefect); None: always in the driver
    retries: int = 0             # an executor that retries failed units may retry this many times
    reported: bool = True        # a line in timings.json and a progress bar / artifact
    takes_progress: bool = False  # run_once(build, progress) gets the driver's progress (export's file bars)
    replaces: str | None = None  # its result, when it ran, stands for this earlier stage's result
    reads: tuple[str, ...] = ()   # run-store parts (or the source) it reads
    writes: tuple[str, ...] = ()  # run-store parts it writes (a unit's last write is its done-marker)

    def active(self, build) -> bool:
        """Whether this build has the stage at all (regeneration only with review.on_reject=regenerate)."""
        return True

    def units(self, build, results: dict) -> list[str] | None:
        """The stage's units, given earlier stages' results (computed in the driver); None: a once-stage."""
        return None

    def where(self, build) -> str:
        return DRIVER

    def before(self, build) -> None:
        """In the driver, before the first unit."""

    def run(self, build, unit: str) -> Any:
        raise NotImplementedError

    def run_once(self, build, progress: Progress | None = None) -> Any:
        raise NotImplementedError

    def after(self, build, executor: "Executor", result: Any) -> Any:
        """In the driver, after the last unit; returns the stage's result."""
        return result


class Ingest(Stage):
    name, unit, task, retries = "ingest", "batch", "ingest-batch", 1
    reads, writes = ("source",), ("quarantine", "ingest")

    def units(self, build, results):
        return build.ingest_batches()

    def where(self, build):
        return _ingest_where(build)

    def run(self, build, unit):
        return build.ingest(unit)


class Plan(Stage):
    name, task = "plan", "plan"
    reads, writes = ("ingest",), ("media_index", "plan")

    def run_once(self, build, progress=None):
        return build.plan()


class Generate(Stage):
    name, unit, task, retries = "generate", "lot", "generate-lot", 1
    reads, writes = ("plan", "media_index"), ("deadletter", "generate")

    def units(self, build, results):
        return results["plan"]

    def where(self, build):
        return _generate_where(build)

    def before(self, build):
        if build.concurrent_lots:
            build.prepare_concurrent_lots()

    def run(self, build, unit):
        return build.generate(unit)


class Review(Stage):
    # Cheap, and a Label Studio push belongs to one client: in the driver.
    name, unit, task = "review", "lot", "review-lot"
    reads, writes = ("generate",), ("review", "review_decisions")

    def units(self, build, results):
        return results["plan"]

    def run(self, build, unit):
        return build.review(unit)

    def after(self, build, executor, result):
        # review.wait: a driver that can suspend (the Prefect flow) waits for the annotators here.
        return executor.await_humans(build, result)


class Regenerate(Stage):
    """review.on_reject=regenerate: the lots review rejected are generated again, as units on the same
    executors as generate (pool, Prefect threads, Dask workers). Listing them moves their parts aside
    (superseded/<lot>/round-k), in the driver, before any unit runs."""
    name, unit, task, retries = "regenerate", "lot", "regenerate-lot", 1
    reported = False
    reads, writes = ("review_decisions", "plan", "media_index"), ("superseded", "deadletter", "generate")

    def active(self, build):
        return build.recipe.review.on_reject == "regenerate"

    def units(self, build, results):
        return build.take_rejected()

    def where(self, build):
        return _generate_where(build)

    def before(self, build):
        Generate().before(build)

    def run(self, build, unit):
        return build.generate(unit)


class Rereview(Stage):
    """The regenerated lots reviewed again (pushed again with Label Studio); its result is every lot's
    current decision, which stands for review's."""
    name, unit, task = "rereview", "lot", "review-lot"
    reported, replaces = False, "review"
    reads, writes = ("generate",), ("review", "review_decisions")

    def active(self, build):
        return build.recipe.review.on_reject == "regenerate"

    def units(self, build, results):
        return results["plan"] if results.get("regenerate") else []

    def run(self, build, unit):
        return build.review(unit)


class Export(Stage):
    name, task, takes_progress = "export", "export", True
    reads, writes = ("review", "review_decisions", "media_index"), ("out_dir",)

    def run_once(self, build, progress=None):
        return build.export_stage(progress)


STAGES: tuple[Stage, ...] = (Ingest(), Plan(), Generate(), Review(), Regenerate(), Rereview(), Export())


def stage(name: str) -> Stage:
    return next(s for s in STAGES if s.name == name)


def unit_worker() -> str:
    """Who ran a unit: host and process (a pool worker, a Dask worker process; threads of one process are one)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def call_unit(build, stage_name: str, unit: str | None = None, progress: Progress | None = None) -> Outcome:
    """Run one unit of a stage (unit None: the once-stage itself) wherever the executor put it; every
    executor calls this, with the stage's name (a worker finds the stage object by it)."""
    st = stage(stage_name)
    t0 = time.perf_counter()
    result = st.run_once(build, progress) if unit is None else st.run(build, unit)
    return result, time.perf_counter() - t0, unit_worker()


def windowed(submit: Callable[[str], Any], units: Sequence[str], window: int, on_done: Callable[[int, Outcome], None],
             first_done: Callable[[list], Iterable], cancel: Callable[[Any], Any] | None = None) -> list[Outcome]:
    """Submit units, at most `window` in flight (a driver's memory stays flat however many units a stage has);
    on_done(i, outcome) as each finishes; outcomes in unit order. `first_done(futures)` yields finished
    futures (at least one); on an error the pending ones are cancelled when `cancel` is given."""
    results: list[Any] = [None] * len(units)
    pending: dict[Any, int] = {}
    nxt = 0
    try:
        while nxt < len(units) or pending:
            while nxt < len(units) and len(pending) < window:
                pending[submit(units[nxt])] = nxt
                nxt += 1
            for fut in first_done(list(pending)):
                i = pending.pop(fut)
                results[i] = fut.result()
                on_done(i, results[i])
    except BaseException:
        if cancel is not None:
            for fut in pending:
                cancel(fut)
        raise
    return results


class Executor:
    """Where a stage's units run. The stages and their order are STAGES'; an executor never adds one."""

    def run_units(self, build, stage: Stage, units: list[str], where: str,
                  on_done: Callable[[int, Outcome], None]) -> list[Outcome]:
        """Run `call_unit(build, stage.name, unit)` for every unit; outcomes in unit order."""
        raise NotImplementedError

    def run_once(self, build, stage: Stage, progress: Progress) -> Outcome:
        """A stage without units (plan, export)."""
        return call_unit(build, stage.name, None, progress if stage.takes_progress else None)

    def await_humans(self, build, decisions: list[dict]) -> list[dict]:
        """Review's hook: a driver that can suspend until annotators decide (the Prefect flow with
        review.wait) does so here and returns the new decisions; others go on with these."""
        return decisions

    def release(self) -> None:
        """No later stage needs CPU workers: free them (their judge models and caches) before review and export."""

    def close(self) -> None:
        self.release()


@dataclass
class StageTimer:
    seconds: dict[str, float] = field(default_factory=dict)
    # Per stage: seconds spent inside the components (source.read, backend, checks, part writes, export
    # writes), summed over units and workers; "workers" is how many processes ran the stage's units.
    components: dict[str, dict[str, float]] = field(default_factory=dict)

    def add(self, stage: str, dt: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + dt

    def add_components(self, stage: str, parts: dict[str, float] | None) -> None:
        d = self.components.setdefault(stage, {})
        for k, v in (parts or {}).items():
            d[k] = d.get(k, 0.0) + v


def run_stages(build, executor: Executor, progress: Progress) -> dict[str, Any]:
    """Every stage of STAGES, in order, its units where `executor` puts them; then build.finish (timings.json
    and the report). Returns {stage name: result} plus "seconds" and "components"."""
    timer = StageTimer()
    results: dict[str, Any] = {}
    stages = [st for st in STAGES if st.active(build)]
    try:
        for k, st in enumerate(stages):
            where = st.where(build)
            t0 = time.perf_counter()
            units = st.units(build, results)
            if units == []:  # nothing to do this time (no lot was rejected): the stage leaves no result
                _release_if_done(executor, build, stages[k + 1:])
                continue
            if units is not None:
                st.before(build)
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
                result = _run_units(build, executor, st, units, where, timer, progress)
            if st.reported:
                timer.add(st.name, time.perf_counter() - t0)
            result = st.after(build, executor, result)
            results[st.name] = result
            if st.replaces is not None:
                results[st.replaces] = result
            _release_if_done(executor, build, stages[k + 1:])
    finally:
        executor.close()
    build.finish(timer.seconds, timer.components)
    return {**results, "seconds": timer.seconds, "components": timer.components}


def _release_if_done(executor: Executor, build, later: list[Stage]) -> None:
    if not any(st.unit and st.where(build) == CPU for st in later):
        executor.release()


def drive(build, executor: Executor, progress: Progress, lock: Callable[[], Any] | None = None) -> dict[str, Any]:
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
        sweep_dead_temps(build.run_dir, build.out_dir)
        return run_stages(build, executor, progress)
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
