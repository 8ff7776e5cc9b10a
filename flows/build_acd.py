"""build-acd: the Prefect flow. Thin: lot-sized tasks around the engine in acd.pipeline.

Tasks are lots and source batches, never single items (the SQLite server drops task runs beyond ~10k).
Resume is the engine's (parts on disk), so a rerun after a crash redoes only missing parts.
Task runner: threads by default; ACD_DASK_ADDRESS=<scheduler> or ACD_DASK_WORKERS=<n> runs the lot tasks on
a Dask cluster (workers must share the run directory).
"""
from __future__ import annotations

import os
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.task_runners import ThreadPoolTaskRunner

from acd import runlock
from acd.pipeline import Build, default_run_dir
from acd.progress import PrefectStageProgress
from acd.recipe import load_recipe


def _task_runner():
    address = os.environ.get("ACD_DASK_ADDRESS")
    workers = int(os.environ.get("ACD_DASK_WORKERS", "0") or 0)
    if address or workers:
        from prefect_dask import DaskTaskRunner

        if address:
            return DaskTaskRunner(address=address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True})
    return ThreadPoolTaskRunner(max_workers=int(os.environ.get("ACD_THREADS", "2")))


@task(name="ingest-batch", retries=1)
def ingest_batch(build: Build, batch: str) -> dict:
    return build.ingest(batch)


@task(name="plan")
def plan(build: Build) -> list[str]:
    return build.plan()


@task(name="generate-lot", retries=1)
def generate_lot(build: Build, lot: str) -> dict:
    return build.generate(lot)


@task(name="review-lot")
def review_lot(build: Build, lot: str) -> dict:
    return build.review(lot)


@task(name="export")
def export(build: Build) -> dict:
    return build.export()


def _wait_all(futures, progress, stage):
    results = []
    for i, fut in enumerate(futures, 1):
        results.append(fut.result())
        progress(stage, i, len(futures))
    return results


@flow(name="build-acd", task_runner=_task_runner(), log_prints=True)
def build_acd(
    recipe: str = "demo",
    out_dir: str | None = None,
    run_dir: str | None = None,
    overrides: dict | None = None,
    start_downstream: bool = False,
) -> dict:
    """Build an ACD dataset from a recipe (schemas/recipes/<recipe>.yaml). Secrets come from env/blocks."""
    logger = get_run_logger()
    spec = load_recipe(recipe, overrides)
    out = Path(out_dir or f"out/{spec['name']}")
    build = Build(spec, run_dir or default_run_dir(spec), out)
    progress = PrefectStageProgress(f"build-acd-{spec['name']}".lower())
    _take_over_run_dir(build, logger)
    try:
        return _build(build, spec, out, progress, logger, start_downstream)
    finally:
        runlock.release(build.run_dir)


def _take_over_run_dir(build: Build, logger) -> None:
    """Lock the run dir; a flow run that died holding it (SIGKILL, OOM) is marked Crashed, not left RUNNING."""
    from prefect.runtime import flow_run

    stale = runlock.acquire(build.run_dir, driver="prefect", flow_run_id=str(flow_run.id or ""))
    if stale and stale.get("flow_run_id"):
        from prefect.client.orchestration import get_client
        from prefect.states import Crashed

        with get_client(sync_client=True) as client:
            old = client.read_flow_run(stale["flow_run_id"])
            if old.state and not old.state.is_final():
                client.set_flow_run_state(
                    stale["flow_run_id"],
                    Crashed(message=f"driver pid {stale['pid']} died; run resumed by flow run {flow_run.id}"),
                    force=True,
                )
                logger.warning("marked orphaned flow run %s as Crashed", stale["flow_run_id"])


def _build(build: Build, spec: dict, out: Path, progress, logger, start_downstream: bool) -> dict:
    import time

    seconds: dict[str, float] = {}
    t0 = time.perf_counter()

    batches = build.ingest_batches()
    _wait_all([ingest_batch.submit(build, b) for b in batches], progress, "ingest")
    seconds["ingest"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    lots = plan.submit(build).result()
    seconds["plan"] = time.perf_counter() - t0
    logger.info("planned %d lots", len(lots))
    t0 = time.perf_counter()
    _wait_all([generate_lot.submit(build, lot) for lot in lots], progress, "generate")
    seconds["generate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    decisions = _wait_all([review_lot.submit(build, lot) for lot in lots], progress, "review")
    seconds["review"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    manifest = export.submit(build).result()
    seconds["export"] = time.perf_counter() - t0
    build.finish(seconds)

    from acd.report import markdown_report

    create_markdown_artifact(markdown=markdown_report(build), key=f"build-acd-{spec['name']}-report".lower(),
                             description="ACD build report")
    accepted = sum(1 for d in decisions if d.get("decision") == "accepted")
    logger.info("dataset written to %s (%d/%d lots accepted)", out.resolve(), accepted, len(lots))
    if start_downstream:
        from prefect.deployments import run_deployment

        for name in ("train-acm/default", "anycapeval/default"):
            try:
                run_deployment(name, parameters={"dataset_dir": str(out.resolve())}, timeout=0)
                logger.info("started %s", name)
            except Exception as exc:  # a missing deployment must not fail a finished build
                logger.warning("could not start %s: %s", name, exc)
    return {"out_dir": str(out.resolve()), "run_dir": str(build.run_dir), "lots": len(lots), "accepted_lots": accepted,
            "pairs": manifest.get("counts", {})}


if __name__ == "__main__":
    build_acd()
