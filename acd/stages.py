"""The build's stages, in order: defined here once, for every driver.

    ingest (per source batch) → plan → generate (per lot) → review (per lot) → regenerate rejected lots
    → export → finish (timings.json, report.html)

A stage is data: its name, the `Build` method it calls (per unit, or once), its units, and where those units
may run (CPU, IO or DRIVER, below). `run_stages` walks STAGES and hands each stage's units to an Executor;
an executor decides only *where* units run, never what runs or in which order (datatrove's
PipelineExecutor / LocalPipelineExecutor split):

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


def _driver(build) -> str:
    return DRIVER


def _batches(build, results: dict) -> list[str]:
    return build.ingest_batches()


def _lots(build, results: dict) -> list[str]:
    return results["plan"]


def _prepare_generate(build) -> None:
    if build.concurrent_lots:
        build.prepare_concurrent_lots()


@dataclass(frozen=True)
class Stage:
    name: str                    # progress key and timings.json key
    method: str                  # the Build method: method(unit) per unit, or method() once
    units: Callable[[Any, dict], list[str]] | None = None  # the stage's units (given earlier results); None: once
    where: Callable[[Any], str] = _driver
    task: str | None = None      # its name as an orchestrator task (Prefect); None: always in the driver
    retries: int = 0             # an executor that retries failed units may retry this many times
    before: Callable[[Any], None] | None = None  # in the driver's process, before the first unit
    reported: bool = True        # a line in timings.json and a progress bar / artifact
    takes_progress: bool = False  # method(progress) when it runs in the driver (export's file-level bars)
    replaces: str | None = None  # its result, when not None, stands for this earlier stage's result


STAGES: tuple[Stage, ...] = (
    Stage("ingest", "ingest", units=_batches, where=_ingest_where, task="ingest-batch", retries=1),
    Stage("plan", "plan", task="plan"),
    Stage("generate", "generate", units=_lots, where=_generate_where, task="generate-lot", retries=1,
          before=_prepare_generate),
    # Cheap, and a Label Studio push belongs to one client.
    Stage("review", "review", units=_lots, task="review-lot"),
    # review.on_reject=regenerate: the rejected lots again (generate + review), then every lot's decision.
    Stage("regenerate", "regenerate_and_review", reported=False, replaces="review"),
    Stage("export", "export_stage", task="export", takes_progress=True),
)


def stage(name: str) -> Stage:
    return next(s for s in STAGES if s.name == name)


def unit_worker() -> str:
    """Who ran a unit: host and process (a pool worker, a Dask worker process; threads of one process are one)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def call_unit(build, method: str, *args) -> Outcome:
    """Run one unit (or a once-stage) wherever the executor put it; every executor calls this."""
    t0 = time.perf_counter()
    result = getattr(build, method)(*args)
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
        """Run `call_unit(build, stage.method, unit)` for every unit; outcomes in unit order."""
        raise NotImplementedError

    def run_once(self, build, stage: Stage, progress: Progress) -> Outcome:
        """A stage without units (plan, regenerate, export)."""
        args = (progress,) if stage.takes_progress else ()
        return call_unit(build, stage.method, *args)

    def after(self, build, stage: Stage, result: Any) -> Any:
        """After a stage, in the driver (the flow waits for human review here); returns the stage's result."""
        return result

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
    try:
        for k, st in enumerate(STAGES):
            where = st.where(build)
            if st.before is not None:
                st.before(build)
            t0 = time.perf_counter()
            if st.units is None:
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
                result = _run_units(build, executor, st, st.units(build, results), where, timer, progress)
            if st.reported:
                timer.add(st.name, time.perf_counter() - t0)
            result = executor.after(build, st, result)
            if st.replaces is None:
                results[st.name] = result
            elif result is not None:
                results[st.replaces] = result
            if not any(later.units is not None and later.where(build) == CPU for later in STAGES[k + 1:]):
                executor.release()
    finally:
        executor.close()
    build.finish(timer.seconds, timer.components)
    return {**results, "seconds": timer.seconds, "components": timer.components}


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
