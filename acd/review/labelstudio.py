"""Everything that talks to Label Studio (label-studio-sdk 2.x), and how its answers are read.

Label Studio is a server the engine reaches over HTTP; nothing here imports the server package.
SDK facts this module relies on (see DESIGN.md): `tasks.list(only_annotated=...)` is ignored by the
open-source server, so annotated tasks are found with a Data Manager filter query; media are served from
a LocalFiles storage on a subfolder of the server's document root as /data/local-files/?d=<rel path>.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable

from acd.paths import ANNOTATION_DIR
from acd.review.config import resolve_token

log = logging.getLogger(__name__)

MODEL_VERSION = "acd-auto-checks"  # predictions from the automatic checks; the project pre-fills from it

# Choice values in annotation/*.xml -> the normalised verdicts the gate reads.
COMPLIES = {"Complies": True, "Does not comply": False}
REJECTED = {"Rejected is worse": "yes", "Rejected is not worse": "no", "Identical (q-c-c)": "identical"}
HALLUCINATION = {"Chosen hallucinates": "chosen", "Rejected hallucinates": "rejected"}


def connect(ls_cfg: dict):
    from label_studio_sdk import LabelStudio

    return LabelStudio(base_url=ls_cfg["url"].rstrip("/"), api_key=resolve_token(ls_cfg), timeout=60)


def label_config(modality: str) -> str:
    return (ANNOTATION_DIR / f"{modality}.xml").read_text()


def guideline_html(path: Path | None = None) -> str:
    """annotation/guideline.md as the HTML Label Studio shows as the project's instructions."""
    import markdown

    return markdown.markdown((path or ANNOTATION_DIR / "guideline.md").read_text(), extensions=["sane_lists"])


def project_title(ls_cfg: dict, modality: str) -> str:
    return f"{ls_cfg.get('project_prefix') or 'ACD review'} · {modality}"


def ensure_project(ls, modality: str, rc: dict) -> int:
    """The one project per modality (found by title), created with the labeling config and guideline.

    An existing project gets the current config and guideline, so edits to annotation/ reach annotators.
    """
    ls_cfg = rc["label_studio"]
    title = project_title(ls_cfg, modality)
    settings: dict[str, Any] = dict(
        label_config=label_config(modality),
        expert_instruction=guideline_html(),
        show_instruction=True,
        show_collab_predictions=True,  # annotators start from the automatic verdicts
        model_version=MODEL_VERSION,
        show_skip_button=True,
    )
    overlap = float(rc.get("overlap") or 0)
    if overlap > 0:  # a share of tasks goes to two annotators: that is what agreement is measured on
        settings.update(maximum_annotations=2, overlap_cohort_percentage=int(round(overlap * 100)))
    for p in ls.projects.list(title=title):
        if p.title == title:
            ls.projects.update(id=p.id, **settings)
            return p.id
    return ls.projects.create(title=title, description=f"ACD {modality} caption review", **settings).id


def ensure_storage(ls, project_id: int, media_dir: Path) -> int:
    """A LocalFiles import storage on the run's media dir, which Label Studio requires before it serves
    /data/local-files/ URLs under that path. It is never synced: tasks are imported by the pipeline."""
    path = str(Path(media_dir).resolve())
    for s in ls.import_storage.local.list(project=project_id):
        if s.path == path:
            return s.id
    return ls.import_storage.local.create(
        project=project_id, path=path, title=f"media {Path(path).parent.name}", use_blob_urls=True,
    ).id


def local_file_url(abs_path: Path, document_root: str | Path) -> str:
    rel = Path(abs_path).resolve().relative_to(Path(document_root).resolve())
    from urllib.parse import quote

    return "/data/local-files/?d=" + quote(rel.as_posix(), safe="/")


def document_root(ls_cfg: dict) -> str:
    root = ls_cfg.get("document_root") or os.environ.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT")
    if not root:
        raise RuntimeError("review.label_studio.document_root is not set (the server's local-files document root)")
    return root


def _filter(*items: tuple[str, str, str, Any]) -> str:
    return json.dumps({"filters": {"conjunction": "and", "items": [
        {"filter": f, "operator": op, "type": typ, "value": val} for f, op, typ, val in items]}})


def lot_tasks(ls, project_id: int, run_id: str, lot_id: str, annotated_only: bool = False, fields: str = "task_only") -> list:
    """A lot's tasks in a project. `only_annotated` is ignored by the open-source server: filter instead."""
    items = [("filter:tasks:data.run_id", "equal", "String", run_id), ("filter:tasks:data.lot_id", "equal", "String", lot_id)]
    if annotated_only:
        items.append(("filter:tasks:total_annotations", "greater", "Number", 0))
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


def parse_result(result: Iterable[dict]) -> dict[str, Any]:
    """An annotation's result list -> chosen_complies, rejected_worse, hallucination flags, correction."""
    out: dict[str, Any] = {"chosen_complies": None, "rejected_worse": None, "chosen_hallucinates": False,
                           "rejected_hallucinates": False, "correction": None}
    for r in result or []:
        name, value = r.get("from_name"), r.get("value") or {}
        choices = value.get("choices") or []
        if name == "chosen_complies" and choices:
            out["chosen_complies"] = COMPLIES.get(choices[0])
        elif name == "rejected_worse" and choices:
            out["rejected_worse"] = REJECTED.get(choices[0])
        elif name == "hallucination":
            for c in choices:
                which = HALLUCINATION.get(c)
                if which:
                    out[f"{which}_hallucinates"] = True
        elif name == "correction":
            text = " ".join(t.strip() for t in (value.get("text") or []) if t and t.strip())
            out["correction"] = text or None
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
