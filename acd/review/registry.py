"""Which runs pushed review tasks to Label Studio: one JSON file per run under a state dir.

push_lot records a run here when review.label_studio.webhook_url is set; the webhook server (acd.review_webhook)
reads it to map a payload's run id or project to a run dir. Its own module so that the pipeline and the review
stage can record runs without importing the webhook server (which imports the pipeline to re-export).
The state dir is $ACD_REVIEW_STATE_DIR, else review-webhook/ under acd.paths.LOCAL_STATE_DIR (.cache/ in a
checkout, ~/.cache/acd for an installed package).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

from acd.recipe_model import Review
from acd.review.config import review_settings

SECRET_ENV = "ACD_WEBHOOK_SECRET"
SECRET_HEADER = "X-ACD-Webhook-Secret"
STATE_ENV = "ACD_REVIEW_STATE_DIR"


def run_id_of(run_dir: str | Path) -> str:
    """Tasks are tagged with their run, so two runs with the same recipe (same pair ids) never mix."""
    p = Path(run_dir).resolve()
    return f"{p.name}-{hashlib.sha1(str(p).encode()).hexdigest()[:8]}"


def state_dir(path: str | Path | None = None) -> Path:
    if path:
        return Path(path)
    env = os.environ.get(STATE_ENV)
    if env:
        return Path(env)
    from acd.paths import LOCAL_STATE_DIR

    return LOCAL_STATE_DIR / "review-webhook"


def secret_headers() -> dict[str, str]:
    """The headers Label Studio must send with each webhook call (empty without a secret)."""
    secret = os.environ.get(SECRET_ENV)
    return {SECRET_HEADER: secret} if secret else {}


def register_run(run_dir: str | Path, review: Review | Mapping | None, project_id: int | None = None, *,
                 out_dir: str | Path | None = None, recipe: str | None = None, state: str | Path | None = None) -> Path:
    """Record (or extend) a run in the registry: one JSON file per run, replaced atomically. `review` is the
    review block (the Review model, or anything acd.review.config.review_settings takes), recorded with every
    field; the token travels by env or Secret block, never here (the model has no field for it). out_dir,
    when given, makes every sync re-export."""
    review = review_settings(review).model_dump(mode="json")
    run_dir = Path(run_dir).resolve()
    run_id = run_id_of(run_dir)
    path = state_dir(state) / "runs" / f"{run_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(".lock"), "w") as lock:  # lots of one run are pushed from parallel workers
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _update_entry(path, run_id, run_dir, review, project_id, out_dir, recipe)


def _update_entry(path: Path, run_id: str, run_dir: Path, review: dict, project_id, out_dir, recipe) -> Path:
    entry = json.loads(path.read_text()) if path.exists() else {}
    projects = set(entry.get("projects") or [])
    if project_id is not None:
        projects.add(int(project_id))
    if recipe is None and (run_dir / "recipe.json").exists():
        recipe = str(run_dir / "recipe.json")
    entry.update(run_id=run_id, run_dir=str(run_dir), review=review, projects=sorted(projects),
                 recipe=recipe or entry.get("recipe"), out_dir=str(out_dir) if out_dir else entry.get("out_dir"))
    from acd.atomicio import write_text

    write_text(path, json.dumps(entry, indent=1, sort_keys=True, default=str))
    return path


def known_runs(state: str | Path | None = None) -> dict[str, dict]:
    out = {}
    for p in sorted((state_dir(state) / "runs").glob("*.json")):
        try:
            e = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        out[e["run_id"]] = e
    return out
