"""A Label Studio webhook endpoint that starts the review sync: annotations in, decisions out, nobody waiting.

    python -m acd.review_webhook [--port 8765] [--state-dir DIR | --run-dir RUN [--recipe R] [--out OUT]]
                                 [--prefect] [--delay 1.0]

POST /label-studio takes Label Studio's webhook payloads (ANNOTATION_CREATED, ANNOTATIONS_CREATED,
ANNOTATION_UPDATED, ANNOTATIONS_DELETED). Tasks pushed by push_lot carry data.run_id, so the payload names
the run; ANNOTATIONS_DELETED only carries annotation ids and the project, so it syncs every known run that
pushed to that project. The answer is immediate (Label Studio waits at most WEBHOOK_TIMEOUT=1 s, inside the
annotator's request): the sync runs in a background thread per run dir, debounced: at most one sync in flight
per run and one queued behind it, so a burst of 50 annotations costs two syncs, not 50. GET /health.

Which runs exist: push_lot writes <state dir>/runs/<run_id>.json (run dir, the review block it was pushed
with, its projects; acd.review.registry) when review.label_studio.webhook_url is set, and registers the webhook on the project.
The state dir is $ACD_REVIEW_STATE_DIR or <project>/.cache/review-webhook. --run-dir serves one run only.

The sync is acd.review_sync.sync_and_reexport (as `acd review sync` and the sync-reviews flow: pull, decide,
regenerate rejected lots, re-export into --out / the registry's out dir, else where the run's build exported),
in-process or, with --prefect and $PREFECT_API_URL set, in a run of the `sync-reviews/default` deployment
(which also resumes a waiting build).

Secret: when $ACD_WEBHOOK_SECRET is set, requests must carry it in the X-ACD-Webhook-Secret header (push_lot
puts that header into the webhook it registers); anything else gets 403 and triggers nothing. The secret is
compared in constant time and never logged or returned.

A top-level module beside acd.review_sync (which it starts), above acd.pipeline and acd.recipe; acd.review
keeps what the pipeline's review stage needs (the registry push_lot writes included).
"""
from __future__ import annotations

import argparse
import hmac
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from acd.recipe_model import Review
from acd.review.config import review_settings
from acd.review.registry import (  # noqa: F401 - re-exported: the registry's names as the webhook's callers know them
    SECRET_ENV, SECRET_HEADER, STATE_ENV, known_runs, register_run, run_id_of, secret_headers, state_dir,
)

log = logging.getLogger(__name__)

PREFECT_FLAG_ENV = "ACD_WEBHOOK_PREFECT"
DEPLOYMENT = "sync-reviews/default"
PATH = "/label-studio"
ACTIONS = frozenset({"ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED"})


@dataclass
class Target:
    """One run the webhook can sync."""
    run_id: str
    run_dir: Path
    review: Review  # the review block to pull with (a mapping is taken as acd.review.config.review_settings does)
    projects: set[int] = field(default_factory=set)
    recipe: str | None = None
    out_dir: str | None = None

    def __post_init__(self) -> None:
        self.review = review_settings(self.review)

    @classmethod
    def from_entry(cls, e: dict) -> "Target":
        """A registry entry (acd.review.registry). It carries its review block under `review`, as a recipe does,
        so review_settings reads it the one way review blocks are read."""
        return cls(e["run_id"], Path(e["run_dir"]), review_settings(e), set(e.get("projects") or []),
                   e.get("recipe"), e.get("out_dir"))


def single_run(run_dir: str | Path, recipe: str | None = None, out_dir: str | None = None,
               state: str | Path | None = None) -> Target:
    """--run-dir: the review block from --recipe, else the run's recipe.json (effective, or as written in run
    dirs made before), else its registry entry."""
    from acd.recipe import load_recipe, recorded_recipe
    from acd.runstore import RECIPE_FILE

    run_dir = Path(run_dir).resolve()
    run_id = run_id_of(run_dir)
    entry = known_runs(state).get(run_id, {})
    review = Target.from_entry(entry).review if entry else None
    if recipe:
        review = review_settings(load_recipe(recipe))
    elif (own := recorded_recipe(run_dir)) is not None:
        recipe = str(run_dir / RECIPE_FILE)
        review = review_settings(own)
    if review is None or review.label_studio is None:
        raise ValueError(f"{run_dir}: no review.label_studio block (pass --recipe, or push the run with webhook_url set)")
    return Target(run_id, run_dir, review, set(entry.get("projects") or []), recipe or entry.get("recipe"),
                  out_dir or entry.get("out_dir"))


# ---- what a payload names ---------------------------------------------------------------------------------

def payload_refs(payload: dict) -> tuple[set[str], set[int]]:
    """(run ids of the payload's tasks, its project id). Bulk actions carry lists."""
    tasks = payload.get("task")
    tasks = tasks if isinstance(tasks, list) else [tasks] if isinstance(tasks, dict) else []
    run_ids = {str(t["data"]["run_id"]) for t in tasks
               if isinstance(t, dict) and isinstance(t.get("data"), dict) and t["data"].get("run_id")}
    project = payload.get("project")
    pid = project.get("id") if isinstance(project, dict) else project
    return run_ids, ({int(pid)} if isinstance(pid, int) or (isinstance(pid, str) and pid.isdigit()) else set())


# ---- debounced background syncs ---------------------------------------------------------------------------

class Debouncer:
    """At most one job in flight per key and one queued behind it; later triggers coalesce into the queued one.

    Each round first waits `delay` seconds (the rest of a burst lands), then takes the queued trigger and runs.
    """

    def __init__(self, work: Callable[[Target], Any], delay: float = 1.0):
        self.work, self.delay = work, delay
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self.state: dict[str, dict] = {}

    def trigger(self, target: Target) -> str:
        key = str(target.run_dir)
        with self._lock:
            st = self.state.setdefault(key, dict(run_id=target.run_id, running=False, pending=False, events=0,
                                                 syncs=0, errors=0, last_error=None, last_seconds=None, last_at=None))
            st["events"] += 1
            st["target"] = target
            if st["running"]:
                was, st["pending"] = st["pending"], True
                return "coalesced" if was else "queued"
            st["running"] = st["pending"] = True
        threading.Thread(target=self._loop, args=(key,), name=f"acd-sync-{target.run_id}", daemon=True).start()
        return "started"

    def _loop(self, key: str) -> None:
        st = self.state[key]
        while True:
            time.sleep(self.delay)
            with self._lock:
                st["pending"] = False
                target = st["target"]
            t0 = time.monotonic()
            try:
                self.work(target)
                ok, err = True, None
            except Exception as e:  # noqa: BLE001 - a failed sync must not kill the server; the next event retries
                from acd.review.labelstudio import LabelStudioUnavailable

                if isinstance(e, LabelStudioUnavailable):  # expected while it restarts: one line, no traceback
                    log.error("review sync of %s: %s; the next event retries", target.run_id, e)
                else:
                    log.exception("review sync of %s failed", target.run_id)
                ok, err = False, f"{type(e).__name__}: {str(e)[:300]}"
            with self._lock:
                st["syncs" if ok else "errors"] += 1
                st.update(last_error=err if err else st["last_error"], last_seconds=round(time.monotonic() - t0, 3),
                          last_at=time.time())
                if not st["pending"]:
                    st["running"] = False
                    self._idle.notify_all()
                    return

    def snapshot(self) -> dict[str, dict]:
        with self._lock:
            return {st["run_id"]: {k: v for k, v in st.items() if k not in ("target", "run_id")} for st in self.state.values()}

    def wait_idle(self, timeout: float | None = None) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: not any(s["running"] for s in self.state.values()), timeout)


# ---- the two ways to sync ---------------------------------------------------------------------------------

def sync_in_process(target: Target) -> list[dict]:
    """The review sync every driver takes (acd.review_sync): pull, decide, regenerate rejected lots, re-export
    into the target's out dir, else where the run's build exported."""
    from acd.review_sync import sync_and_reexport

    result = sync_and_reexport(target.run_dir, out_dir=target.out_dir, review=target.review)
    log.info("webhook sync %s: %s", target.run_id, {d["lot_id"]: d["decision"] for d in result.decisions})
    if (target.run_dir / "review_wait.json").exists():
        log.warning("%s has a waiting build flow: only the sync-reviews deployment (--prefect) resumes it", target.run_id)
    return result.decisions


def sync_by_deployment(deployment: str = DEPLOYMENT, wait_s: float = 600) -> Callable[[Target], Any]:
    """A run of the sync-reviews deployment per sync. wait_s > 0 keeps the run 'in flight' (for the debounce)
    until it ends or wait_s passes; 0 only submits it."""

    def work(target: Target):
        from prefect.deployments import run_deployment

        ls = target.review.label_studio
        # Where to pull from, by name only: the token stays in the env / Secret block (parameters are stored).
        params = {"run_dir": str(target.run_dir), "recipe": target.recipe, "out_dir": target.out_dir,
                  "label_studio_url": ls.url if ls else None, "document_root": ls.document_root if ls else None}
        fr = run_deployment(deployment, parameters=params, timeout=wait_s, poll_interval=1)
        state = fr.state.type.value if fr.state else None
        log.info("webhook sync %s: flow run %s %s", target.run_id, fr.id, state)
        if wait_s and state in ("FAILED", "CRASHED", "CANCELLED"):
            raise RuntimeError(f"flow run {fr.id} ended {state}")
        return fr

    return work


# ---- the app ----------------------------------------------------------------------------------------------

class Dispatcher:
    """Payload -> targets -> debounced syncs. The registry is re-read per call, so new pushes need no restart."""

    def __init__(self, work: Callable[[Target], Any], *, delay: float = 1.0, state: str | Path | None = None,
                 only: Target | None = None, out_dir: str | None = None):
        self.debouncer = Debouncer(work, delay)
        self.state, self.only, self.out_dir = state, only, out_dir

    def targets(self, run_ids: set[str], projects: set[int]) -> list[Target]:
        if self.only is not None:
            hit = self.only.run_id in run_ids or (not run_ids and (not projects or not self.only.projects
                                                                  or bool(projects & self.only.projects)))
            return [self.only] if hit else []
        runs = known_runs(self.state)
        if run_ids:
            found = [Target.from_entry(runs[r]) for r in sorted(run_ids) if r in runs]
        else:  # deletions name no task: every run that pushed to the project
            found = [Target.from_entry(e) for e in runs.values() if projects & set(e.get("projects") or [])]
        for t in found:
            t.out_dir = t.out_dir or self.out_dir
        return found

    def handle(self, payload: dict) -> dict:
        action = payload.get("action")
        if action not in ACTIONS:
            return {"action": action, "ignored": "action"}
        run_ids, projects = payload_refs(payload)
        targets = self.targets(run_ids, projects)
        return {"action": action, "runs": {t.run_id: self.debouncer.trigger(t) for t in targets},
                "unknown": sorted(run_ids - {t.run_id for t in targets})}


def create_app(dispatcher: Dispatcher, secret: str | None = None):
    """The ASGI app. `secret` defaults to $ACD_WEBHOOK_SECRET (read once, at creation)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    secret = os.environ.get(SECRET_ENV) if secret is None else secret
    if not secret:
        log.warning("no %s: the webhook accepts unauthenticated calls (bind it to loopback only)", SECRET_ENV)
    expected = secret.encode() if secret else None

    async def hook(request: Request):
        if expected is not None:
            given = request.headers.get(SECRET_HEADER, "").encode()
            if not hmac.compare_digest(given, expected):
                return JSONResponse({"error": "forbidden"}, status_code=403)
        try:
            payload = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return JSONResponse({"error": "body is not JSON"}, status_code=400)
        if not isinstance(payload, dict):
            return JSONResponse({"error": "body is not a JSON object"}, status_code=400)
        return JSONResponse(dispatcher.handle(payload))

    async def health(request: Request):
        return JSONResponse({"status": "UP", "runs": dispatcher.debouncer.snapshot()})

    app = Starlette(routes=[Route(PATH, hook, methods=["POST"]), Route("/health", health, methods=["GET"])])
    app.state.dispatcher = dispatcher
    return app


def build_dispatcher(*, state: str | Path | None = None, run_dir: str | Path | None = None, recipe: str | None = None,
                     out_dir: str | None = None, prefect: bool = False, delay: float = 1.0,
                     deployment: str = DEPLOYMENT, prefect_wait_s: float = 600) -> Dispatcher:
    if prefect and not os.environ.get("PREFECT_API_URL"):
        raise RuntimeError("--prefect needs PREFECT_API_URL (the server the sync-reviews deployment lives on)")
    work = sync_by_deployment(deployment, prefect_wait_s) if prefect else sync_in_process
    only = single_run(run_dir, recipe, out_dir, state) if run_dir else None
    return Dispatcher(work, delay=delay, state=state, only=only, out_dir=out_dir)


def main(argv: Iterable[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--state-dir", default=None, help=f"registry of pushed runs (default ${STATE_ENV} or .cache/review-webhook)")
    ap.add_argument("--run-dir", default=None, help="serve this run only")
    ap.add_argument("--recipe", default=None, help="recipe for --run-dir (default: the run's recipe.json)")
    ap.add_argument("--out", default=None, help="re-export here after each sync")
    ap.add_argument("--prefect", action="store_true", default=os.environ.get(PREFECT_FLAG_ENV, "") in ("1", "true"),
                    help=f"run the {DEPLOYMENT} deployment instead of syncing in-process (needs PREFECT_API_URL)")
    ap.add_argument("--deployment", default=DEPLOYMENT)
    ap.add_argument("--delay", type=float, default=1.0, help="seconds to let a burst of annotations land before a sync")
    a = ap.parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import uvicorn

    dispatcher = build_dispatcher(state=a.state_dir, run_dir=a.run_dir, recipe=a.recipe, out_dir=a.out,
                                  prefect=a.prefect, delay=a.delay, deployment=a.deployment)
    print(f"ACD review webhook: http://{a.host}:{a.port}{PATH}  (recipe: review.label_studio.webhook_url)", flush=True)
    uvicorn.run(create_app(dispatcher), host=a.host, port=a.port, log_level="warning")


if __name__ == "__main__":
    main()
