"""The build's stages, in order: defined here once, for every driver.

    ingest (per source batch) → dedup (media duplicates, evaluation overlap) → plan → generate (per lot) → review (per lot)
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
the Build is duck-typed here (acd.pipeline imports this package, not the other way round).
"""
from acd.stages.base import CPU, DRIVER, IO, Executor, Outcome, Progress, Stage, StageTimer, unit_worker, windowed
from acd.stages.run import STAGES, call_unit, drive, run_stages, stage

__all__ = ["CPU", "DRIVER", "IO", "STAGES", "Executor", "Outcome", "Progress", "Stage", "StageTimer", "call_unit",
           "drive", "run_stages", "stage", "unit_worker", "windowed"]
