"""Push a lot's sample to Label Studio and sync the annotations back, all state in the run directory.

    <run>/review_input/<lot>/part-0.parquet        the lot's pairs as pushed (PAIR_SCHEMA)
    <run>/review_media/<lot>/part-0.parquet        media_key -> uri of the lot's media (further samples)
    <run>/review_tasks/<lot>/part-0.parquet        sampled + gold pairs with their Label Studio task ids
    <run>/review_queue/<lot>/queued.json           a push that found Label Studio down (retried later)
    <run>/review_annotations/<lot>/part-<k>.parquet   annotations, appended: only new, changed or deleted ones
    <run>/review/<lot>/part-0.parquet              the lot's pairs with review columns (human decision)
    <run>/review_decisions/<lot>/part-0.parquet    one DECISION_SCHEMA row per lot
    <run>/review_issues/<lot>/part-0.parquet       invalid/skipped/deleted annotations, refused corrections
    <run>/review_annotators/all/part-0.parquet     gold accuracy per annotator

What Label Studio shows carries nothing that tells a planted gold pair from a real one: a task's data is
the media, the texts, the automatic verdict, an opaque `item` id and the run and lot it belongs to. Which
tasks are gold (and which pair each task is) lives only in review_tasks, keyed by task id and item.

Pushing is idempotent (existing tasks are looked up by run, lot and item before importing), and so is
syncing: annotations are appended per lot as soon as that lot is fetched, keyed by (annotation id,
updated_at, deleted), so a sync that dies midway keeps what it read and a re-sync adds only what is new.
An annotation that disappeared from Label Studio gets a `deleted` row and stops counting.
review/, review_decisions/ and review_issues/ are the exceptions to "parts are immutable": they are the
lot's current verdict and are atomically replaced by every sync until annotators finish.

Label Studio down: push_or_queue() (what the build calls) queues the push and the build goes on with the
automatic decision, pending; the next build or sync pushes queued lots. sync() retries every call with
backoff (review.label_studio.retries, backoff_s) and then stops with LabelStudioUnavailable, one sentence.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from acd.atomicio import write_text
from acd.records import PAIR_SCHEMA, conform, rows_to_table
from acd.review import labelstudio as lsapi, registry
from acd.recipe_model import LabelStudio, Review
from acd.review.config import recipe_seed, review_settings
from acd.review.gate import DECISION_SCHEMA, ISSUE_SCHEMA, annotator_accuracy, human_review, review_lot
from acd.review.registry import run_id_of
from acd.review.sampling import _rank, first_sample_size, gold_count, lot_id_of, next_sample_size, plant_gold, sample_order
from acd.runstore import RunStore

log = logging.getLogger(__name__)

TASK_SCHEMA = pa.schema([
    pa.field("pair_id", pa.string(), nullable=False),
    pa.field("lot_id", pa.string(), nullable=False),
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("modality", pa.string(), nullable=False),
    pa.field("project_id", pa.int64(), nullable=False),
    pa.field("task_id", pa.int64(), nullable=False),
    pa.field("gold", pa.bool_(), nullable=False),  # ours only: never sent to Label Studio
    pa.field("item", pa.string()),  # the task's opaque data.item (lsapi.item_id)
    pa.field("round", pa.int64()),  # 0: the first sample; k: the k-th further sample (sequential sampling)
    pa.field("seed", pa.int64()),  # the recipe seed the sample was drawn with
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
    pa.field("skip_reason", pa.string()),
    pa.field("invalid", pa.string()),  # why the annotation has no usable verdict (null: valid)
    pa.field("deleted", pa.bool_()),  # gone from Label Studio: kept for the record, no longer counted
    pa.field("was_cancelled", pa.bool_()),
    pa.field("created_at", pa.string()),
    pa.field("updated_at", pa.string()),
    pa.field("lead_time", pa.float64()),
])

ANNOTATOR_SCHEMA = pa.schema([
    pa.field("annotator", pa.string(), nullable=False),
    pa.field("annotations", pa.int64()),
    pa.field("skipped", pa.int64()),
    pa.field("invalid", pa.int64()),
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


REVIEW_MEDIA_SCHEMA = pa.schema([pa.field("media_key", pa.string(), nullable=False), pa.field("uri", pa.string())])
QUEUE = "review_queue"


def _task_payload(row: dict, uri: str, store: RunStore, run_id: str, docroot: str) -> dict:
    # No pair_id, no gold flag, nothing that differs between a planted gold pair and a real one.
    data = {
        "media": lsapi.local_file_url(store.root / uri, docroot),
        "instruction": row["instruction"],
        "chosen": row["chosen"],
        "rejected": row["rejected"],
        "auto": lsapi.auto_summary(row),
        "item": row["item"],
        "lot_id": row["lot_id"],
        "run_id": run_id,
        "modality": row["modality"],
    }
    return {"data": data, "predictions": [lsapi.prediction(row)]}


def push_lot(run_dir: str | Path, pairs: pa.Table, cfg: Review | dict, seed: int, *, media=None, client=None) -> dict:
    """Send one lot's review sample (plus planted gold pairs) to the modality's Label Studio project.

    media: a table (media_key, uri) or dict media_key -> uri relative to the run dir; by default read from
    the run's ingest stage. Returns {lot_id, project_id, sampled, gold, created, existing}. Never waits for
    annotators: pulling their answers is sync()'s job. The lot's pairs and media uris are stored before
    Label Studio is contacted, so a push that fails can be redone from the run dir (retry_queued).
    """
    rc = review_settings(cfg)
    _label_studio(rc, "push_lot")
    store = RunStore(run_dir)
    lot, n = _store_lot(store, pairs, media)
    return _push(store, lot, rc, seed, max(first_sample_size(n, rc), _pushed_real(store, lot)), client=client)


def _label_studio(rc: Review, who: str) -> LabelStudio:
    if rc.label_studio is None:
        raise ValueError(f"{who} needs review.label_studio; without it the auto gate (review_lot) decides")
    return rc.label_studio


def _store_lot(store: RunStore, pairs: pa.Table, media) -> tuple[str, int]:
    """The lot's pairs and media uris into the run dir: everything a push (now, queued, or a further
    sample) needs. Returns (lot id, pairs)."""
    pairs = conform(pairs, PAIR_SCHEMA)
    lot = lot_id_of(pairs)
    modalities = set(pairs.column("modality").to_pylist())
    if len(modalities) != 1:
        raise ValueError(f"lot {lot} mixes modalities {sorted(modalities)}")
    keys = set(pairs.column("media_key").to_pylist())
    uris = _media_uris(store, media, keys)
    store.write_part("review_input", lot, pairs)
    store.write_part("review_media", lot, rows_to_table(
        [{"media_key": k, "uri": u} for k, u in sorted(uris.items()) if k in keys], REVIEW_MEDIA_SCHEMA))
    return lot, pairs.num_rows


def _pushed_real(store: RunStore, lot: str) -> int:
    if not store.has_part("review_tasks", lot):
        return 0
    return sum(1 for g in store.read_part("review_tasks", lot).column("gold").to_pylist() if not g)


def _push(store: RunStore, lot: str, rc: Review, seed: int, n_real: int, *, client=None) -> dict:
    """Make sure the first n_real pairs of the lot's sampling order (plus their share of gold pairs) are
    tasks in Label Studio; record every task of the lot in review_tasks. Idempotent: what exists is kept."""
    ls_cfg = _label_studio(rc, "a review push")
    pairs = store.read_part("review_input", lot)
    by_id = {r["pair_id"]: r for r in pairs.to_pylist()}
    order = sample_order(pairs, seed)
    prev = {r["pair_id"]: r for r in store.read_part("review_tasks", lot).to_pylist()} if store.has_part("review_tasks", lot) else {}
    new_round = max((r.get("round") or 0 for r in prev.values()), default=-1) + 1
    run_id = run_id_of(store.root)
    items = [dict(by_id[p], gold=False, gold_kind=None, gold_source=None) for p in order[:n_real]]
    items += [dict(by_id[p], gold=False, gold_kind=None, gold_source=None) for p in prev
              if p in by_id and not prev[p]["gold"] and p not in set(order[:n_real])]
    items += [dict(g, gold=True) for g in plant_gold(pairs, gold_count(n_real, rc), seed)]
    items += [dict(prev[p], gold=True) for p in prev if prev[p]["gold"] and p not in {i["pair_id"] for i in items}]
    for r in items:
        # From the texts shown (a pair regenerated under the same pair_id becomes a new task); a gold row
        # carried over from review_tasks keeps the item it was pushed with.
        r["item"] = r.get("item") or lsapi.item_id(run_id, lot, r["pair_id"], r["instruction"], r["chosen"], r["rejected"])
        r["round"] = (prev[r["pair_id"]].get("round") or 0) if r["pair_id"] in prev else new_round
    items.sort(key=lambda r: _rank(seed, lot, "order", r["pair_id"]))  # gold scattered among real pairs
    uris = {r["media_key"]: r["uri"] for r in store.read_part("review_media", lot).to_pylist()}
    missing_media = sorted({r["media_key"] for r in items} - set(uris))
    if missing_media:
        raise KeyError(f"lot {lot}: no media uri for {missing_media[:3]}")

    ls = client or lsapi.connect(ls_cfg)
    docroot = lsapi.document_root(ls_cfg)
    modality = items[0]["modality"]
    project_id = lsapi.ensure_project(ls, modality, rc)
    lsapi.ensure_storage(ls, project_id, store.media_dir)

    legacy: dict[int, str] = {}

    def task_ids() -> dict[str, int]:
        ids: dict[str, int] = {}
        for t in sorted(lsapi.lot_tasks(ls, project_id, run_id, lot), key=lambda t: t.id):
            data = t.data or {}
            item = data.get("item")
            if item is None and data.get("pair_id"):  # pushed before items existed: same key, from its own data
                item = lsapi.item_id(run_id, lot, data["pair_id"], data.get("instruction"), data.get("chosen"), data.get("rejected"))
                legacy[t.id] = item
            ids.setdefault(item, t.id)  # a duplicate (two pushes racing) maps to the first
        return ids

    existing = task_ids()
    by_item = {r["item"]: r for r in items}
    for task_id, item in legacy.items():  # their data named the pair and flagged gold: rewrite it
        if item in by_item and existing.get(item) == task_id:
            ls.tasks.update(id=str(task_id), data=_task_payload(by_item[item], uris[by_item[item]["media_key"]], store, run_id, docroot)["data"])
    # Tasks of this run and lot showing texts the lot no longer has (it was regenerated): annotators must not
    # spend time on them, and their verdicts are not about the new captions. Their annotations stay stored.
    wanted = {r["item"] for r in items}
    stale = [task_id for item, task_id in existing.items() if item not in wanted]
    for task_id in stale:
        ls.tasks.delete(id=str(task_id))
    existing = {item: task_id for item, task_id in existing.items() if item in wanted}
    new = [_task_payload(r, uris[r["media_key"]], store, run_id, docroot) for r in items if r["item"] not in existing]
    lsapi.import_tasks(ls, project_id, new)
    ids = task_ids() if new else existing
    lost = [r["pair_id"] for r in items if r["item"] not in ids]
    if lost:
        raise RuntimeError(f"lot {lot}: {len(lost)} tasks missing after import, e.g. {lost[:3]}")
    rows = [dict(r, run_id=run_id, project_id=project_id, task_id=ids[r["item"]], media_uri=uris[r["media_key"]], seed=seed)
            for r in items]
    store.write_part("review_tasks", lot, rows_to_table(rows, TASK_SCHEMA))
    if ls_cfg.webhook_url:
        register_webhook(store.root, rc, ls, project_id)
    sampled = sum(1 for r in items if not r["gold"])
    info = {"lot_id": lot, "project_id": project_id, "sampled": sampled, "stale_removed": len(stale),
            "gold": len(items) - sampled, "created": len(new), "existing": len(existing),
            "rounds": max(r["round"] for r in items) + 1}
    log.info("review push %s", info)
    return info


# ---- Label Studio down during a build: queue the push, go on, retry on the next build or sync -------------

_DOWN: dict[str, float] = {}  # url -> when a push found it down (this process skips it for DOWN_S seconds)
_WARNED: set[str] = set()
DOWN_S = 60.0


def _queue_path(store: RunStore, lot: str) -> Path:
    return store.root / QUEUE / lot / "queued.json"


def queued_lots(run_dir: str | Path) -> list[str]:
    d = Path(run_dir) / QUEUE
    return sorted(p.parent.name for p in d.glob("*/queued.json")) if d.exists() else []


def push_or_queue(run_dir: str | Path, pairs: pa.Table, cfg: Review | dict, seed: int, *, media=None, client=None) -> dict:
    """push_lot, except that an unreachable Label Studio queues the push instead of failing the build.

    The lot keeps its automatic decision (pending human review); one warning per process says so; the
    next build (Build.review -> retry_queued_lot) or `acd review sync` pushes it."""
    rc = review_settings(cfg)
    url = _label_studio(rc, "push_or_queue").url
    store = RunStore(run_dir)
    lot = lot_id_of(pairs)
    if time.monotonic() - _DOWN.get(url, -1e9) < DOWN_S:  # found down moments ago: do not wait on it per lot
        _store_lot(store, pairs, media)
        return _queue(store, lot, seed, url, "Label Studio was unreachable moments ago")
    try:
        info = push_lot(run_dir, pairs, rc, seed, media=media, client=client)
    except Exception as e:  # noqa: BLE001 - only unavailability is queued
        if not lsapi.is_unavailable(e):
            raise
        _DOWN[url] = time.monotonic()
        return _queue(store, lot, seed, url, f"{type(e).__name__}: {str(e)[:200]}")
    _queue_path(store, lot).unlink(missing_ok=True)
    return info


def _queue(store: RunStore, lot: str, seed: int, url: str, why: str) -> dict:
    path = _queue_path(store, lot)
    write_text(path, json.dumps({"lot_id": lot, "seed": seed, "url": url, "error": why}, sort_keys=True))
    if url not in _WARNED:
        _WARNED.add(url)
        log.warning("Label Studio at %s is unreachable (%s): review pushes are queued in %s and retried by the next "
                    "`acd build` or `acd review sync`; the dataset is exported with review pending",
                    url, why.split(":")[0], store.root / QUEUE)
    return {"lot_id": lot, "queued": True, "error": why}


def retry_queued_lot(run_dir: str | Path, lot: str, cfg: Review | dict, *, client=None) -> dict | None:
    """Push a queued lot from what the run dir holds; still down: stays queued (None)."""
    store = RunStore(run_dir)
    path = _queue_path(store, lot)
    if not path.exists():
        return None
    rc = review_settings(cfg)
    url = _label_studio(rc, "retry_queued_lot").url
    if time.monotonic() - _DOWN.get(url, -1e9) < DOWN_S:
        return None
    try:
        info = _push_queued(store, lot, rc, client)
    except Exception as e:  # noqa: BLE001
        if not lsapi.is_unavailable(e):
            raise
        _DOWN[url] = time.monotonic()
        return None
    return info


def _push_queued(store: RunStore, lot: str, rc: Review, client) -> dict:
    seed = int(json.loads(_queue_path(store, lot).read_text())["seed"])
    n = first_sample_size(store.read_part("review_input", lot).num_rows, rc)
    info = _push(store, lot, rc, seed, max(n, _pushed_real(store, lot)), client=client)
    _queue_path(store, lot).unlink(missing_ok=True)
    return info


def register_webhook(run_dir: str | Path, rc: Review, ls, project_id: int) -> int:
    """review.label_studio.webhook_url set: record the run where the webhook server finds it (acd.review_webhook)
    and make sure the project calls that URL on annotation changes (with the shared secret header, if any)."""
    registry.register_run(run_dir, rc, project_id)
    return lsapi.ensure_webhook(ls, project_id, _label_studio(rc, "register_webhook").webhook_url, registry.secret_headers())


def _annotation_rows(task, ours: dict, lot: str, who: dict[int, str]) -> list[dict]:
    rows = []
    for a in task.annotations or []:
        by = a.get("completed_by")
        uid = by.get("id") if isinstance(by, dict) else by
        rows.append({
            "annotation_id": a["id"], "task_id": task.id, "pair_id": ours["pair_id"], "lot_id": lot,
            "annotator": who.get(uid, str(uid)), **lsapi.parse_result(a.get("result")), "deleted": False,
            "was_cancelled": bool(a.get("was_cancelled")), "created_at": str(a.get("created_at")),
            "updated_at": str(a.get("updated_at")), "lead_time": a.get("lead_time"),
        })
    return rows


def _parts(store: RunStore, stage: str, lot: str) -> list[Path]:
    d = store.root / stage / lot
    return sorted(d.glob("part-*.parquet"), key=lambda p: int(p.stem.split("-")[1])) if d.exists() else []


def load_annotations(store: RunStore, lot: str, include_deleted: bool = False) -> list[dict]:
    """All annotations stored for a lot, the latest version of each (parts are appended in sync order, so
    the last part that has an annotation holds its current state). Deleted ones only when asked."""
    latest: dict[int, dict] = {}
    for p in _parts(store, "review_annotations", lot):
        for r in pq.read_table(p).to_pylist():
            latest[r["annotation_id"]] = r
    return sorted((r for r in latest.values() if include_deleted or not r.get("deleted")), key=lambda r: r["annotation_id"])


def save_annotations(store: RunStore, lot: str, rows: list[dict]) -> int:
    """Append the rows not stored yet (new annotation, new updated_at, or now deleted) as the next part."""
    parts = _parts(store, "review_annotations", lot)
    seen = {(r["annotation_id"], r["updated_at"], bool(r.get("deleted"))) for p in parts for r in
            pq.read_table(p, columns=[c for c in ("annotation_id", "updated_at", "deleted") if c in pq.read_schema(p).names]).to_pylist()}
    fresh = [r for r in rows if (r["annotation_id"], r["updated_at"], bool(r.get("deleted"))) not in seen]
    if fresh:
        k = int(parts[-1].stem.split("-")[1]) + 1 if parts else 0
        store.write_part("review_annotations", lot, rows_to_table(fresh, ANNOTATION_SCHEMA), k=k)
    return len(fresh)


def _fetch_lot(ls, store: RunStore, lot: str, tasks: list[dict], who: dict[int, str]) -> tuple[int, int]:
    """Read a lot's tasks (all of them: skipped ones have only cancelled annotations) and store what changed,
    including annotations deleted since the last sync. Returns (new or changed rows, newly deleted)."""
    by_task = {t["task_id"]: t for t in tasks}
    by_item = {t.get("item"): t for t in tasks if t.get("item")}
    project_id, run_id = tasks[0]["project_id"], tasks[0]["run_id"]
    rows = []
    for t in lsapi.lot_tasks(ls, project_id, run_id, lot, fields="all"):
        ours = by_task.get(t.id) or by_item.get((t.data or {}).get("item"))
        if ours is not None:  # a task of this run and lot we did not push (by hand) is not ours to count
            rows += _annotation_rows(t, ours, lot, who)
    present = {r["annotation_id"] for r in rows}
    gone = [dict(a, deleted=True) for a in load_annotations(store, lot)
            if a["annotation_id"] not in present and a["task_id"] in by_task]
    return save_annotations(store, lot, rows + gone), len(gone)


def _decide_lot(store: RunStore, lot: str, rc: Review) -> tuple[pa.Table, dict, list[dict]]:
    tasks = store.read_part("review_tasks", lot).to_pylist()
    pairs = store.read_part("review_input", lot)
    seed = int(tasks[0].get("seed") or 0)  # only the auto note's sample count depends on it
    _, auto = review_lot(pairs, rc, seed)
    current = {t["task_id"] for t in tasks}  # annotations of superseded tasks (older captions) do not count
    anns = [a for a in load_annotations(store, lot, include_deleted=True) if a["task_id"] in current]
    reviewed, decision = human_review(pairs, tasks, anns, rc, auto=auto)
    decision["rounds"] = max((t.get("round") or 0) for t in tasks) + 1
    return reviewed, decision, decision.pop("issues")


def _further_sample(store: RunStore, lot: str, decision: dict, rc: Review) -> int:
    """needs_more and every pushed pair answered (verdict, skip or invalid): the cumulative size of the
    next sample; 0 while annotators still have tasks of this lot, or when the whole lot is pushed."""
    if decision.get("human_decision") != "needs_more":
        return 0
    tasks = store.read_part("review_tasks", lot).to_pylist()
    current = {t["task_id"] for t in tasks}
    answered = {a["pair_id"] for a in load_annotations(store, lot) if a["task_id"] in current}
    if any(not t["gold"] and t["pair_id"] not in answered for t in tasks):
        return 0
    sampled = sum(1 for t in tasks if not t["gold"])
    population = decision["population"]
    return next_sample_size(sampled, population, rc) if sampled < population else 0


def sync(run_dir: str | Path, cfg, *, client=None, on_lot: Callable[[str], None] | None = None) -> pa.Table:
    """Pull every pushed lot's annotations, store them, and (re)decide each lot. Returns the decisions
    table (DECISION_SCHEMA), also written per lot under review_decisions/. `on_lot(lot_id)` is called after
    each lot is stored (progress; tests use it to stop the server midway).

    First pushes queued lots (Label Studio was down during the build). A lot that still needs more reviews
    once every pushed task is answered gets a further sample (sequential sampling). Every Label Studio call
    is retried with backoff while the server is unreachable, then LabelStudioUnavailable says so; what was
    stored before stays stored.

    cfg: the recipe (a Recipe, or a mapping with a `review` block) or its review block (Review or mapping);
    the recipe's seed is the sample seed of lots pushed before review_tasks recorded one."""
    rc = review_settings(cfg)
    ls_cfg = _label_studio(rc, "sync")
    store = RunStore(run_dir)
    ls = client or lsapi.connect(ls_cfg)

    def call(fn, what: str):
        return lsapi.retrying(fn, ls_cfg, what)

    for lot in queued_lots(store.root):
        call(lambda: _push_queued(store, lot, rc, ls), f"pushing queued lot {lot}")
    who = call(lambda: lsapi.users(ls), "listing users")
    decisions, all_tasks, all_anns = [], [], []
    for lot in store.lots("review_tasks"):
        tasks = store.read_part("review_tasks", lot).to_pylist()
        added, gone = call(lambda: _fetch_lot(ls, store, lot, tasks, who), f"reading lot {lot}")
        reviewed, decision, issues = _decide_lot(store, lot, rc)
        if decision.get("human_decision") == "needs_more":
            n_next = _further_sample(store, lot, decision, rc)
            if n_next:
                seed = int(tasks[0]["seed"] if tasks[0].get("seed") is not None else recipe_seed(cfg) or 0)
                info = call(lambda: _push(store, lot, rc, seed, n_next, client=ls), f"pushing a further sample of lot {lot}")
                reviewed, decision, issues = _decide_lot(store, lot, rc)
                decision["note"] += f"; further sample pushed: {info['created']} tasks (round {info['rounds'] - 1})"
                tasks = store.read_part("review_tasks", lot).to_pylist()
        store.write_part("review", lot, reviewed)
        store.write_part("review_decisions", lot, rows_to_table([decision], DECISION_SCHEMA))
        store.write_part("review_issues", lot, rows_to_table(issues, ISSUE_SCHEMA))
        log.info("review sync %s: %d new or changed annotations (%d deleted), %s", lot, added, gone, decision["decision"])
        decisions.append(decision)
        all_tasks += tasks
        current = {t["task_id"] for t in tasks}
        all_anns += [a for a in load_annotations(store, lot) if a["task_id"] in current]
        if on_lot:
            on_lot(lot)
    store.write_part("review_annotators", "all", rows_to_table(annotator_accuracy(all_tasks, all_anns), ANNOTATOR_SCHEMA))
    return rows_to_table(decisions, DECISION_SCHEMA)
