"""Push a lot's sample to Label Studio and sync the annotations back, all state in the run directory.

    <run>/review_input/<lot>/part-0.parquet        the lot's pairs as pushed (PAIR_SCHEMA)
    <run>/review_tasks/<lot>/part-0.parquet        sampled + gold pairs with their Label Studio task ids
    <run>/review_annotations/<lot>/part-<k>.parquet   annotations, appended: only new or changed ones
    <run>/review/<lot>/part-0.parquet              the lot's pairs with review columns (human decision)
    <run>/review_decisions/<lot>/part-0.parquet    one DECISION_SCHEMA row per lot
    <run>/review_annotators/all/part-0.parquet     gold accuracy per annotator

Pushing is idempotent (existing tasks are looked up by run, lot and pair_id before importing), and so is
syncing: annotations are appended per lot as soon as that lot is fetched, keyed by (annotation id,
updated_at), so a sync that dies midway keeps what it read and a re-sync adds only what is new.
review/ and review_decisions/ are the exceptions to "parts are immutable": they are the lot's current
verdict and are atomically replaced by every sync until annotators finish.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from acd.records import PAIR_SCHEMA, conform, rows_to_table
from acd.review import labelstudio as lsapi, registry
from acd.review.config import review_config
from acd.review.gate import DECISION_SCHEMA, annotator_accuracy, human_review
from acd.review.registry import run_id_of
from acd.review.sampling import _rank, gold_count, lot_id_of, plant_gold, sample_lot
from acd.runstore import RunStore

log = logging.getLogger(__name__)

TASK_SCHEMA = pa.schema([
    pa.field("pair_id", pa.string(), nullable=False),
    pa.field("lot_id", pa.string(), nullable=False),
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("modality", pa.string(), nullable=False),
    pa.field("project_id", pa.int64(), nullable=False),
    pa.field("task_id", pa.int64(), nullable=False),
    pa.field("gold", pa.bool_(), nullable=False),
    pa.field("gold_kind", pa.string()),
    pa.field("gold_source", pa.string()),
    pa.field("media_uri", pa.string()),
    pa.field("chosen", pa.string()),
    pa.field("rejected", pa.string()),
])

ANNOTATION_SCHEMA = pa.schema([
    pa.field("annotation_id", pa.int64(), nullable=False),
    pa.field("task_id", pa.int64(), nullable=False),
    pa.field("pair_id", pa.string(), nullable=False),
    pa.field("lot_id", pa.string(), nullable=False),
    pa.field("annotator", pa.string(), nullable=False),
    pa.field("chosen_complies", pa.bool_()),
    pa.field("rejected_worse", pa.string()),  # yes | no | identical
    pa.field("chosen_hallucinates", pa.bool_()),
    pa.field("rejected_hallucinates", pa.bool_()),
    pa.field("correction", pa.string()),
    pa.field("was_cancelled", pa.bool_()),
    pa.field("created_at", pa.string()),
    pa.field("updated_at", pa.string()),
    pa.field("lead_time", pa.float64()),
])

ANNOTATOR_SCHEMA = pa.schema([
    pa.field("annotator", pa.string(), nullable=False),
    pa.field("annotations", pa.int64()),
    pa.field("gold_seen", pa.int64()),
    pa.field("gold_caught", pa.int64()),
    pa.field("gold_accuracy", pa.float64()),
])


def _media_uris(store: RunStore, media, keys: set[str]) -> dict[str, str]:
    if isinstance(media, dict):
        return media
    if media is None:
        media = store.sql("select media_key, uri from {ingest}")
    return {k: u for k, u in zip(media.column("media_key").to_pylist(), media.column("uri").to_pylist()) if k in keys}


def _task_payload(row: dict, uri: str, store: RunStore, run_id: str, docroot: str) -> dict:
    data = {
        "media": lsapi.local_file_url(store.root / uri, docroot),
        "instruction": row["instruction"],
        "chosen": row["chosen"],
        "rejected": row["rejected"],
        "auto": lsapi.auto_summary(row),
        "pair_id": row["pair_id"],
        "lot_id": row["lot_id"],
        "run_id": run_id,
        "modality": row["modality"],
        "gold": bool(row["gold"]),
    }
    return {"data": data, "predictions": [lsapi.prediction(row)]}


def push_lot(run_dir: str | Path, pairs: pa.Table, cfg: dict, seed: int, *, media=None, client=None) -> dict:
    """Send one lot's review sample (plus planted gold pairs) to the modality's Label Studio project.

    media: a table (media_key, uri) or dict media_key -> uri relative to the run dir; by default read from
    the run's ingest stage. Returns {lot_id, project_id, sampled, gold, created, existing}. Never waits for
    annotators: pulling their answers is sync()'s job.
    """
    rc = review_config(cfg)
    ls_cfg = rc.get("label_studio")
    if not ls_cfg:
        raise ValueError("push_lot needs review.label_studio; without it the auto gate (review_lot) decides")
    store = RunStore(run_dir)
    pairs = conform(pairs, PAIR_SCHEMA)
    lot = lot_id_of(pairs)
    modalities = set(pairs.column("modality").to_pylist())
    if len(modalities) != 1:
        raise ValueError(f"lot {lot} mixes modalities {sorted(modalities)}")
    modality = modalities.pop()
    store.write_part("review_input", lot, pairs)

    by_id = {r["pair_id"]: r for r in pairs.to_pylist()}
    sample_ids = sample_lot(pairs, rc, seed)
    items = [dict(by_id[p], gold=False, gold_kind=None, gold_source=None) for p in sample_ids]
    items += [dict(g, gold=True) for g in plant_gold(pairs, gold_count(len(sample_ids), rc), seed)]
    items.sort(key=lambda r: _rank(seed, lot, "order", r["pair_id"]))  # gold scattered among real pairs
    uris = _media_uris(store, media, {r["media_key"] for r in items})
    missing_media = sorted({r["media_key"] for r in items} - set(uris))
    if missing_media:
        raise KeyError(f"lot {lot}: no media uri for {missing_media[:3]}")

    ls = client or lsapi.connect(ls_cfg)
    run_id = run_id_of(store.root)
    docroot = lsapi.document_root(ls_cfg)
    project_id = lsapi.ensure_project(ls, modality, rc)
    lsapi.ensure_storage(ls, project_id, store.media_dir)
    existing = {t.data["pair_id"]: t.id for t in lsapi.lot_tasks(ls, project_id, run_id, lot)}
    new = [_task_payload(r, uris[r["media_key"]], store, run_id, docroot) for r in items if r["pair_id"] not in existing]
    lsapi.import_tasks(ls, project_id, new)
    task_ids = {t.data["pair_id"]: t.id for t in lsapi.lot_tasks(ls, project_id, run_id, lot)} if new else existing
    lost = [r["pair_id"] for r in items if r["pair_id"] not in task_ids]
    if lost:
        raise RuntimeError(f"lot {lot}: {len(lost)} tasks missing after import, e.g. {lost[:3]}")
    rows = [dict(r, run_id=run_id, project_id=project_id, task_id=task_ids[r["pair_id"]], media_uri=uris[r["media_key"]])
            for r in items]
    store.write_part("review_tasks", lot, rows_to_table(rows, TASK_SCHEMA))
    if ls_cfg.get("webhook_url"):
        register_webhook(store.root, rc, ls, project_id)
    info = {"lot_id": lot, "project_id": project_id, "sampled": len(sample_ids),
            "gold": sum(1 for r in items if r["gold"]), "created": len(new), "existing": len(existing)}
    log.info("review push %s", info)
    return info


def register_webhook(run_dir: str | Path, rc: dict, ls, project_id: int) -> int:
    """review.label_studio.webhook_url set: record the run where the webhook server finds it (acd.review.webhook)
    and make sure the project calls that URL on annotation changes (with the shared secret header, if any)."""
    registry.register_run(run_dir, rc, project_id)
    return lsapi.ensure_webhook(ls, project_id, rc["label_studio"]["webhook_url"], registry.secret_headers())


def _annotation_rows(task, lot: str, who: dict[int, str]) -> list[dict]:
    rows = []
    for a in task.annotations or []:
        by = a.get("completed_by")
        uid = by.get("id") if isinstance(by, dict) else by
        rows.append({
            "annotation_id": a["id"], "task_id": task.id, "pair_id": task.data["pair_id"], "lot_id": lot,
            "annotator": who.get(uid, str(uid)), **lsapi.parse_result(a.get("result")),
            "was_cancelled": bool(a.get("was_cancelled")), "created_at": str(a.get("created_at")),
            "updated_at": str(a.get("updated_at")), "lead_time": a.get("lead_time"),
        })
    return rows


def _parts(store: RunStore, stage: str, lot: str) -> list[Path]:
    d = store.root / stage / lot
    return sorted(d.glob("part-*.parquet"), key=lambda p: int(p.stem.split("-")[1])) if d.exists() else []


def load_annotations(store: RunStore, lot: str) -> list[dict]:
    """All annotations stored for a lot, the latest version of each."""
    latest: dict[int, dict] = {}
    for p in _parts(store, "review_annotations", lot):
        for r in pq.read_table(p).to_pylist():
            cur = latest.get(r["annotation_id"])
            if cur is None or (r["updated_at"] or "") >= (cur["updated_at"] or ""):
                latest[r["annotation_id"]] = r
    return sorted(latest.values(), key=lambda r: r["annotation_id"])


def save_annotations(store: RunStore, lot: str, rows: list[dict]) -> int:
    """Append the rows not stored yet (new annotation or new updated_at) as the next part; return how many."""
    parts = _parts(store, "review_annotations", lot)
    seen = {(r["annotation_id"], r["updated_at"]) for p in parts for r in
            pq.read_table(p, columns=["annotation_id", "updated_at"]).to_pylist()}
    fresh = [r for r in rows if (r["annotation_id"], r["updated_at"]) not in seen]
    if fresh:
        k = int(parts[-1].stem.split("-")[1]) + 1 if parts else 0
        store.write_part("review_annotations", lot, rows_to_table(fresh, ANNOTATION_SCHEMA), k=k)
    return len(fresh)


def sync(run_dir: str | Path, cfg: dict, *, client=None, on_lot: Callable[[str], None] | None = None) -> pa.Table:
    """Pull every pushed lot's annotations, store them, and (re)decide each lot. Returns the decisions
    table (DECISION_SCHEMA), also written per lot under review_decisions/. `on_lot(lot_id)` is called after
    each lot is stored (progress; tests use it to stop the server midway)."""
    rc = review_config(cfg)
    ls_cfg = rc.get("label_studio")
    if not ls_cfg:
        raise ValueError("sync needs review.label_studio")
    store = RunStore(run_dir)
    ls = client or lsapi.connect(ls_cfg)
    who = lsapi.users(ls)
    decisions, all_tasks, all_anns = [], [], []
    for lot in store.lots("review_tasks"):
        tasks = store.read_part("review_tasks", lot).to_pylist()
        project_id, run_id = tasks[0]["project_id"], tasks[0]["run_id"]
        fetched = lsapi.lot_tasks(ls, project_id, run_id, lot, annotated_only=True, fields="all")
        added = save_annotations(store, lot, [row for t in fetched for row in _annotation_rows(t, lot, who)])
        anns = load_annotations(store, lot)
        reviewed, decision = human_review(store.read_part("review_input", lot), tasks, anns, rc)
        store.write_part("review", lot, reviewed)
        store.write_part("review_decisions", lot, rows_to_table([decision], DECISION_SCHEMA))
        log.info("review sync %s: %d new annotations, %s", lot, added, decision["decision"])
        decisions.append(decision)
        all_tasks += tasks
        all_anns += anns
        if on_lot:
            on_lot(lot)
    store.write_part("review_annotators", "all", rows_to_table(annotator_accuracy(all_tasks, all_anns), ANNOTATOR_SCHEMA))
    return rows_to_table(decisions, DECISION_SCHEMA)
