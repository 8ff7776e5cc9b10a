"""build-acd: the Prefect flow. Thin: the engine's stages (acd.stages.STAGES, in their order) run by a
PrefectExecutor, which submits each unit as a Prefect task named after its stage (ingest-batch, plan,
generate-lot, review-lot, export) through the flow's task runner.

Tasks are lots and source batches, never single items (the SQLite server drops task runs beyond ~10k).
Resume is the engine's (parts on disk), so a rerun after a crash redoes only missing parts; Prefect's
task cache is off (NO_CACHE) for the same reason.
Task runner (chosen when this module is imported): threads by default (ACD_THREADS, default 2);
ACD_DASK_ADDRESS=<scheduler address> runs the lot tasks on an existing Dask cluster, ACD_DASK_WORKERS=<n> on
a local cluster of n worker processes. Dask workers must share the run directory (and out_dir).

    prefect deployment run build-acd/demo
    prefect deployment run build-acd/demo --param out_dir=/tmp/x --param run_dir=/tmp/x-run \
        --param overrides='{"source": {"counts": {"image": 6, "video": 4, "audio": 4}}, "lot_size": 16}'
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from acd import runlock
from acd.errors import AcdError
from acd.pipeline import Build, default_run_dir
from acd.progress import PrefectStageProgress, artifact_key
from acd.recipe import load_recipe
from acd.stages import IO, STAGES, Executor, Stage, call_unit, drive, windowed


def _task_runner():
    address = os.environ.get("ACD_DASK_ADDRESS")
    workers = int(os.environ.get("ACD_DASK_WORKERS", "0") or 0)
    if address or workers:
        from prefect_dask import DaskTaskRunner

        _pickle_tasks_by_value()

        if address:
            return DaskTaskRunner(address=address)
        return DaskTaskRunner(cluster_kwargs={
            "n_workers": workers, "threads_per_worker": 1, "processes": True,
            "host": "127.0.0.1", "dashboard_address": None,
        })
    # Enough threads for a model backend's lots in flight (they wait on the endpoint); the flow bounds how
    # many units of each stage it submits at once (cpu_threads() for CPU-bound units, see _run_units).
    return ThreadPoolTaskRunner(max_workers=max(cpu_threads(), 64))


def cpu_threads() -> int:
    return int(os.environ.get("ACD_THREADS", "2"))


def _dask_workers() -> int:
    """How many Dask worker processes share the endpoints (each gets that share of slots and rate)."""
    if os.environ.get("ACD_DASK_ADDRESS"):
        from distributed import Client

        with Client(os.environ["ACD_DASK_ADDRESS"], timeout=30) as client:
            return max(1, len(client.scheduler_info().get("workers", {})))
    return int(os.environ.get("ACD_DASK_WORKERS", "0") or 0)


def _pickle_tasks_by_value() -> None:
    """Ship this module's task functions to Dask workers by value: `flows/` is not an installed package, so
    a worker started elsewhere (`dask worker tcp://...` on another machine, another cwd) cannot import it.
    What they call lives in `acd`, which is installed wherever the workers run."""
    import sys

    import cloudpickle

    module = sys.modules.get(__name__)
    if module is not None:
        cloudpickle.register_pickle_by_value(module)


_TASK = dict(cache_policy=NO_CACHE, persist_result=False)


def _unit(build: Build, stage_name: str, unit: str | None = None) -> tuple:
    """One unit of a stage (or a once-stage: plan, export), exactly as the CLI's executor runs it."""
    return call_unit(build, stage_name, unit)


# One task per stage that has a task name, made from the engine's stage list (its names and retries).
TASKS = {st.name: task(name=st.task, retries=st.retries, **_TASK)(_unit) for st in STAGES if st.task}


def _parse_overrides(overrides: dict | str | None) -> dict:
    """A dict (the API, `--param overrides='{...}'`) or a JSON string (a UI text field, a quoted CLI value)."""
    if overrides is None or overrides == "":
        return {}
    if isinstance(overrides, str):
        overrides = json.loads(overrides)
    if not isinstance(overrides, dict):
        raise TypeError(f"overrides must be a mapping (JSON object), got {type(overrides).__name__}")
    return overrides


@flow(name="build-acd", task_runner=_task_runner(), log_prints=True)
def build_acd(
    recipe: str = "demo",
    out_dir: str | None = None,
    run_dir: str | None = None,
    overrides: dict[str, Any] | str | None = None,
    start_downstream: bool = False,
    downstream_params: dict | None = None,
) -> dict:
    """Build an ACD dataset from a recipe (schemas/recipes/<recipe>.yaml), deep-merging `overrides` (a JSON
    object) over it. Secrets come from env or Prefect blocks, never from parameters."""
    logger = get_run_logger()
    spec = load_recipe(recipe, _parse_overrides(overrides))
    out = Path(out_dir or f"out/{spec.name}")
    build = Build(spec, run_dir or default_run_dir(spec), out)
    workers = _dask_workers()
    if workers > 1 and not spec.backend.capabilities.cpu_bound:
        build.slot_share = 1.0 / workers  # every worker process sends; together they keep the endpoint's limits
    progress = PrefectStageProgress(artifact_key("build-acd", spec.name))
    try:
        done = drive(build, PrefectExecutor(spec, logger), progress, lock=lambda: _take_over_run_dir(build, logger))
    except AcdError as exc:
        logger.error("%s", exc)  # the one line to act on (the task's traceback is Prefect's)
        raise
    return _finish(build, spec, out, done, logger, start_downstream, downstream_params)


def _wait_for_humans(build: Build, spec, lots: list[str], decisions: list[dict], logger) -> list[dict]:
    """review.wait: suspend until sync-reviews has human decisions for every lot, then go on to export.

    A suspended deployment run restarts from the top when resumed; the parts on disk make that cheap, and
    the lots' decisions are then the annotators' (review_decisions is replaced by the sync), so it does not
    suspend again.
    """
    if not (spec.review.wait and spec.review.label_studio):
        return decisions
    pending = [d["lot_id"] for d in decisions
               if d.get("mode") != "label_studio" or d.get("pending") or d.get("decision") == "needs_more"]
    if not pending:
        return decisions
    from flows.sync_reviews import wait_for_reviews

    logger.info("waiting for human review of %d lots (sync-reviews resumes this run)", len(pending))
    wait_for_reviews(str(build.run_dir))
    from acd.stages.review import review

    return [review(build, lot) for lot in lots]


def _take_over_run_dir(build: Build, logger) -> dict | None:
    """Lock the run dir; a flow run that died holding it (SIGKILL, OOM, a lost machine) is marked Crashed.

    A process worker marks its own child Crashed when the child dies, but when the worker goes too (the
    machine, the container, a `kill -9` of the process group) nothing does: the flow run stays RUNNING
    forever. The lock file names the flow run that holds the directory; the next run takes the lock over
    from a dead PID and moves that orphaned run to Crashed. A live owner makes this run fail (RunLocked).
    """
    from prefect.runtime import flow_run

    stale = runlock.acquire(build.run_dir, driver="prefect", flow_run_id=str(flow_run.id or ""))
    if not stale:
        return None
    old_id = stale.get("flow_run_id")
    if not old_id:
        logger.warning("took over %s from a dead %s driver (pid %s)", build.run_dir, stale.get("driver"), stale.get("pid"))
        return stale
    from flows.runstate import settle_orphan

    try:
        # The flow run (unless its process worker already reported it) and its in-flight task runs: Crashed.
        done = settle_orphan(old_id, f"driver pid {stale.get('pid')} died holding {build.run_dir}; "
                                     f"the run was resumed by flow run {flow_run.id}")
        if done["flow_run_marked"]:
            logger.warning("marked orphaned flow run %s (%s) as Crashed", old_id, done["name"])
        else:
            logger.info("previous flow run %s of %s ended %s", old_id, build.run_dir, done["previous_state"])
        if done["task_runs_marked"]:
            logger.warning("marked %d in-flight task runs of %s as Crashed", done["task_runs_marked"], old_id)
    except Exception as exc:  # noqa: BLE001 - the old run may live on another server; the build goes on
        logger.warning("could not mark flow run %s Crashed: %s", old_id, exc)
    return stale


def _first_done(futures: list):
    from itertools import islice

    from prefect.futures import as_completed

    return islice(as_completed(futures), 1)


class PrefectExecutor(Executor):
    """Every unit (and plan, export) as a task of the flow's task runner: threads, or Dask workers.

    At most a window of a stage's tasks is in flight: build.lot_threads() for a model backend's lots (they wait
    on the endpoint), cpu_threads() otherwise. After review it waits for human review (review.wait)."""

    def __init__(self, spec, logger):
        self.spec, self.logger = spec, logger

    def run_units(self, build: Build, stage: Stage, units: list[str], where: str, on_done) -> list:
        window = build.lot_threads() if where == IO else cpu_threads()
        fn = TASKS[stage.name]
        self.logger.info("%s: %d %ss", stage.name, len(units), stage.unit)
        return windowed(lambda u: fn.submit(build, stage.name, u), units, window, on_done, _first_done)

    def run_once(self, build: Build, stage: Stage, progress) -> tuple:
        if stage.task is None:  # a stage without a task runs where the flow runs
            return call_unit(build, stage.name, None, progress if stage.takes_progress else None)
        return TASKS[stage.name].submit(build, stage.name).result()

    def await_humans(self, build: Build, decisions: list[dict]) -> list[dict]:
        return _wait_for_humans(build, self.spec, build.lots(), decisions, self.logger)


def _finish(build: Build, spec, out: Path, done: dict, logger, start_downstream: bool,
            downstream_params: dict | None = None) -> dict:
    lots, decisions, manifest, seconds = done["plan"], done["review"], done["export"]["manifest"], done["seconds"]

    from acd.report import markdown_report

    create_markdown_artifact(markdown=markdown_report(build), key=artifact_key("build-acd", spec.name, "report"),
                             description="ACD build report")
    accepted = sum(1 for d in decisions if d.get("decision") == "accepted")
    logger.info("dataset written to %s (%d/%d lots accepted)", out.resolve(), accepted, len(lots))
    if start_downstream:
        from prefect.deployments import run_deployment

        # train-acm hands its checkpoint on to anycapeval (start_eval), so evaluation sees the trained model.
        try:
            params = {"dataset_dir": str(out.resolve()), "start_eval": True, **(downstream_params or {})}
            run = run_deployment("train-acm/default", timeout=0, parameters=params)
            logger.info("started train-acm flow run %s", run.id)
        except Exception as exc:  # a missing deployment must not fail a finished build
            logger.warning("could not start train-acm: %s", exc)
    return {"out_dir": str(out.resolve()), "run_dir": str(build.run_dir), "lots": len(lots), "accepted_lots": accepted,
            "pairs": manifest.get("counts", {}), "seconds": {k: round(v, 3) for k, v in seconds.items()}}


if __name__ == "__main__":
    build_acd()
