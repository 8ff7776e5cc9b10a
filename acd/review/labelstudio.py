"""Everything that talks to Label Studio (label-studio-sdk 2.x), and how its answers are read.

Label Studio is a server the engine reaches over HTTP; nothing here imports the server package.
SDK facts this module relies on (see DESIGN.md): `tasks.list(only_annotated=...)` is ignored by the
open-source server, so annotated tasks are found with a Data Manager filter query; media are served from
a LocalFiles storage on a subfolder of the server's document root as /data/local-files/?d=<rel path>.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from acd.paths import ANNOTATION_DIR
from acd.recipe_model import LabelStudio as LabelStudioSettings, Review, as_section
from acd.review.config import resolve_token, review_settings

log = logging.getLogger(__name__)

MODEL_VERSION = "acd-auto-checks"  # predictions from the automatic checks; the project pre-fills from it

# Choice values in annotation/*.xml -> the normalised verdicts the gate reads.
COMPLIES = {"Complies": True, "Does not comply": False}
REJECTED = {"Rejected is worse": "yes", "Rejected is not worse": "no", "Identical (q-c-c)": "identical"}
HALLUCINATION = {"Chosen hallucinates": "chosen", "Rejected hallucinates": "rejected"}
TEXT_FIELDS = ("correction", "skip_reason")  # free-text areas
FIELDS = {"chosen_complies": COMPLIES, "rejected_worse": REJECTED, "hallucination": HALLUCINATION,
          **{name: None for name in TEXT_FIELDS}}
REQUIRED = ("chosen_complies", "rejected_worse")  # required="true" in the configs: a verdict needs both

T = TypeVar("T")


class LabelStudioUnavailable(RuntimeError):
    """Label Studio did not answer (connection refused or dropped, or a 502/503/504 while it restarts)."""


def is_unavailable(exc: BaseException) -> bool:
    """A transport failure or a gateway/availability status: worth waiting for, not a bug or a bad request."""
    import httpx

    if isinstance(exc, (httpx.TransportError, LabelStudioUnavailable)):
        return True
    return getattr(exc, "status_code", None) in (502, 503, 504)


def retrying(fn: Callable[[], T], ls_cfg: LabelStudioSettings | dict, what: str) -> T:
    """fn() with exponential backoff while Label Studio is unavailable (review.label_studio.retries tries,
    waits backoff_s, 2x, 4x, ...); then LabelStudioUnavailable with one clear sentence. Only idempotent
    operations go through here (lookups, fetches, a push that first looks up what already exists)."""
    ls_cfg = as_section(LabelStudioSettings, ls_cfg)
    tries = max(1, ls_cfg.retries)  # retries: 0 still makes the one call
    wait = ls_cfg.backoff_s
    for attempt in range(1, tries + 1):
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - only unavailability is retried; the rest propagates as is
            if not is_unavailable(e):
                raise
            if attempt == tries:
                raise LabelStudioUnavailable(
                    f"Label Studio at {ls_cfg.url} did not answer while {what} "
                    f"({type(e).__name__}: {str(e)[:120] or 'no detail'}) after {tries} tries") from None
            log.info("Label Studio unavailable while %s (%s); retry %d/%d in %.1fs", what, type(e).__name__,
                     attempt, tries - 1, wait)
            time.sleep(wait)
            wait *= 2
    raise AssertionError("unreachable")


def item_id(run_id: str, lot_id: str, pair_id: str, *texts: str | None) -> str:
    """The task's key in Label Studio: opaque, so a planted gold pair looks like any other task (its pair
    id and gold flag stay in the run dir, keyed by task id and this item id). The texts shown are part of
    it: a regenerated pair (new captions, same pair_id) is a new task, never an old task's annotations."""
    return hashlib.sha256("\x1f".join([run_id, lot_id, pair_id, *(t or "" for t in texts)]).encode()).hexdigest()[:16]


def connect(ls_cfg: LabelStudioSettings | dict):
    from label_studio_sdk import LabelStudio

    ls_cfg = as_section(LabelStudioSettings, ls_cfg)
    return LabelStudio(base_url=ls_cfg.url.rstrip("/"), api_key=resolve_token(ls_cfg), timeout=60)


def label_config(modality: str) -> str:
    return (ANNOTATION_DIR / f"{modality}.xml").read_text()


def guideline_html(path: Path | None = None) -> str:
    """annotation/guideline.md as the HTML Label Studio shows as the project's instructions."""
    import markdown

    return markdown.markdown((path or ANNOTATION_DIR / "guideline.md").read_text(), extensions=["sane_lists"])


def project_title(ls_cfg: LabelStudioSettings | dict, modality: str) -> str:
    return f"{as_section(LabelStudioSettings, ls_cfg).project_prefix} · {modality}"


def ensure_project(ls, modality: str, rc: Review | dict) -> int:
    """The one project per modality (found by title), created with the labeling config and guideline.

    An existing project gets the current guideline, and the current config when it changed, so edits to
    annotation/ reach annotators. The config is sent only when it differs: Label Studio validates a new
    config against every stored annotation, so one annotation with a field the config lacks (made through
    the API) would otherwise refuse every later push with 400 "Created annotations are incompatible".
    When a changed config is refused that way, the project keeps its old config and the push goes on.
    """
    rc = review_settings(rc)
    ls_cfg = rc.label_studio
    if ls_cfg is None:
        raise ValueError("ensure_project needs review.label_studio")
    title = project_title(ls_cfg, modality)
    settings: dict[str, Any] = dict(
        label_config=label_config(modality),
        expert_instruction=guideline_html(),
        show_instruction=True,
        show_collab_predictions=True,  # annotators start from the automatic verdicts
        model_version=MODEL_VERSION,
        show_skip_button=True,
    )
    overlap = rc.overlap
    if overlap > 0:  # a share of tasks goes to two annotators: that is what agreement is measured on
        settings.update(maximum_annotations=2, overlap_cohort_percentage=int(round(overlap * 100)))
    key = (ls_cfg.url, title, hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest())
    with _LOCK:  # lots pushed from threads of one process must not both create the project
        # Checked and updated by this process moments ago: skip the round trips (a build pushes many lots);
        # re-checked after CACHE_S, so a long-lived process notices a project deleted by hand.
        pid, at = _PROJECTS.get(key, (None, -CACHE_S))
        if time.monotonic() - at >= CACHE_S:
            pid = _find_or_create_project(ls, title, modality, settings)
            _PROJECTS[key] = (pid, time.monotonic())
        return pid


CACHE_S = 300.0
_PROJECTS: dict[tuple, tuple[int, float]] = {}
_STORAGES: dict[tuple, int] = {}
_LOCK = threading.Lock()


def _find_or_create_project(ls, title: str, modality: str, settings: dict) -> int:
    for p in ls.projects.list(title=title):
        if p.title == title:
            current = (ls.projects.get(id=p.id).label_config or "").strip()
            if current == settings["label_config"].strip():
                settings.pop("label_config")
            try:
                ls.projects.update(id=p.id, **settings)
            except Exception as e:  # noqa: BLE001 - narrowed below
                if getattr(e, "status_code", None) != 400 or "label_config" not in settings:
                    raise
                settings.pop("label_config")
                log.warning("Label Studio project %r keeps its labeling config: the new one was refused (%s); "
                            "pushes go on", title, str(getattr(e, "body", e))[:200])
                ls.projects.update(id=p.id, **settings)
            return p.id
    return ls.projects.create(title=title, description=f"ACD {modality} caption review", **settings).id


def ensure_storage(ls, project_id: int, media_dir: Path) -> int:
    """A LocalFiles import storage on the run's media dir, which Label Studio requires before it serves
    /data/local-files/ URLs under that path. It is never synced: tasks are imported by the pipeline."""
    path = str(Path(media_dir).resolve())
    with _LOCK:
        if (project_id, path) not in _STORAGES:
            _STORAGES[(project_id, path)] = next(
                (s.id for s in ls.import_storage.local.list(project=project_id) if s.path == path), None) \
                or ls.import_storage.local.create(project=project_id, path=path, title=f"media {Path(path).parent.name}",
                                                  use_blob_urls=True).id
        return _STORAGES[(project_id, path)]


def local_file_url(abs_path: Path, document_root: str | Path) -> str:
    rel = Path(abs_path).resolve().relative_to(Path(document_root).resolve())
    from urllib.parse import quote

    return "/data/local-files/?d=" + quote(rel.as_posix(), safe="/")


def document_root(ls_cfg: LabelStudioSettings | dict) -> str:
    root = as_section(LabelStudioSettings, ls_cfg).document_root or os.environ.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT")
    if not root:
        raise RuntimeError("review.label_studio.document_root is not set (the server's local-files document root)")
    return root


def _filter(*items: tuple[str, str, str, Any]) -> str:
    return json.dumps({"filters": {"conjunction": "and", "items": [
        {"filter": f, "operator": op, "type": typ, "value": val} for f, op, typ, val in items]}})


def lot_tasks(ls, project_id: int, run_id: str, lot_id: str, fields: str = "task_only") -> list:
    """A lot's tasks in a project (`only_annotated` is ignored by the open-source server, and a
    total_annotations filter would miss skipped tasks, whose annotations are cancelled ones: so all of them)."""
    items = [("filter:tasks:data.run_id", "equal", "String", run_id), ("filter:tasks:data.lot_id", "equal", "String", lot_id)]
    return list(ls.tasks.list(project=project_id, query=_filter(*items), fields=fields, page_size=500))


def import_tasks(ls, project_id: int, tasks: list[dict], chunk: int = 500) -> None:
    for i in range(0, len(tasks), chunk):
        ls.projects.import_tasks(id=project_id, request=tasks[i:i + chunk], return_task_ids=True)


def users(ls) -> dict[int, str]:
    return {u.id: (u.email or u.username or str(u.id)) for u in ls.users.list()}


def prediction(row: dict) -> dict:
    """The automatic checks as a pre-filled answer the annotator confirms or changes."""
    complies = "Complies" if row.get("check_passed") else "Does not comply"
    rejected = "Identical (q-c-c)" if row.get("is_qcc") else "Rejected is worse"
    result = [
        {"from_name": "chosen_complies", "to_name": "chosen", "type": "choices", "value": {"choices": [complies]}},
        {"from_name": "rejected_worse", "to_name": "rejected", "type": "choices", "value": {"choices": [rejected]}},
    ]
    pred = {"model_version": MODEL_VERSION, "result": result}
    if row.get("judge_score") is not None:
        pred["score"] = float(row["judge_score"])
    return pred


def auto_summary(row: dict) -> str:
    parts = ["Automatic checks: " + ("passed" if row.get("check_passed") else "FAILED")]
    if row.get("judge_score") is not None:
        parts.append(f"judge score {row['judge_score']:.2f}")
    if row.get("check_failures"):
        parts.append("failures: " + ", ".join(row["check_failures"]))
    return " · ".join(parts)


def _text(value: dict) -> str | None:
    text = " ".join(t.strip() for t in (value.get("text") or []) if isinstance(t, str) and t.strip())
    return text or None


def parse_result(result: Iterable[dict] | None) -> dict[str, Any]:
    """An annotation's result list -> chosen_complies, rejected_worse, hallucination flags, correction,
    skip_reason, and `invalid`: why the annotation carries no usable verdict (None when it does).

    Invalid: an empty result, a field name or choice value the configs do not have (annotations made
    through the API are not validated by Label Studio), a missing required verdict, or two verdicts in a
    single-choice field. An invalid annotation is kept and reported, never counted as "Does not comply".
    """
    out: dict[str, Any] = {"chosen_complies": None, "rejected_worse": None, "chosen_hallucinates": False,
                           "rejected_hallucinates": False, "correction": None, "skip_reason": None, "invalid": None}
    problems: list[str] = []
    seen: set[str] = set()
    for r in result or []:
        if not isinstance(r, dict):
            problems.append("malformed result item")
            continue
        name, value = r.get("from_name"), r.get("value") or {}
        if name not in FIELDS:
            problems.append(f"unknown field {name!r}")
            continue
        seen.add(name)
        if name in TEXT_FIELDS:
            out[name] = _text(value)
            continue
        choices = value.get("choices") or []
        unknown = [c for c in choices if c not in FIELDS[name]]
        if unknown:
            problems.append(f"unknown choice {unknown[0]!r} in {name}")
            continue
        if name == "hallucination":
            for c in choices:
                out[f"{HALLUCINATION[c]}_hallucinates"] = True
        elif len(choices) > 1:
            problems.append(f"{len(choices)} choices in {name}")
        elif choices:
            out[name] = (COMPLIES if name == "chosen_complies" else REJECTED)[choices[0]]
    if not result:
        problems.append("empty result")
    else:
        problems += [f"no {name} verdict" for name in REQUIRED
                     if out[name] is None and not any(name in p for p in problems)]
    out["invalid"] = "; ".join(problems) or None
    return out


WEBHOOK_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED")


def ensure_webhook(ls, project_id: int, url: str, headers: dict[str, str] | None = None) -> int:
    """The project's webhook to `url` for the annotation actions, with payloads (task.data carries run and
    lot). Idempotent: an existing hook to the same URL is kept, and updated when its actions, headers (a
    rotated secret) or payload flag differ; a missing one is created. Returns the webhook id."""
    want = dict(actions=list(WEBHOOK_ACTIONS), headers=dict(headers or {}), send_payload=True,
                send_for_all_actions=False, is_active=True)
    mine = sorted((w for w in ls.webhooks.list(project=str(project_id)) if w.url == url and w.project == project_id),
                  key=lambda w: w.id)
    for extra in mine[1:]:  # two workers pushing lots of one project at once may both have created one
        ls.webhooks.delete(id=extra.id)
    if not mine:
        return ls.webhooks.create(url=url, project=project_id, **want).id
    w = mine[0]
    have = dict(actions=sorted(w.actions or []), headers=dict(w.headers or {}), send_payload=w.send_payload,
                send_for_all_actions=w.send_for_all_actions, is_active=w.is_active)
    if have != {**want, "actions": sorted(WEBHOOK_ACTIONS)}:
        ls.webhooks.update(id=w.id, url=url, **want)
    return w.id
