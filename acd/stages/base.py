"""The parts every stage and executor share: where units run, the Stage base class, the Executor
interface, windowed submission and the stage timer. No stage is defined here (see acd.stages.run)."""
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


def unit_worker() -> str:
    """Who ran a unit: host and process (a pool worker, a Dask worker process; threads of one process are one)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def run_unit(st: Stage, build, unit: str | None = None, progress: Progress | None = None) -> Outcome:
    """One unit of `st` (unit None: the once-stage itself), timed, with the process that ran it."""
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
        return run_unit(stage, build, None, progress if stage.takes_progress else None)

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




def since(timings: dict[str, float], key: str, t0: float) -> float:
    """Add the seconds since t0 to timings[key] (a stage body's component times); returns now."""
    now = time.perf_counter()
    timings[key] = timings.get(key, 0.0) + (now - t0)
    return now
