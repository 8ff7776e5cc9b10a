"""Push -> annotate (annotators played through the API) -> sync -> lot gate, against a real Label Studio."""
from __future__ import annotations

import json
import threading
import time
import uuid

import httpx
import pyarrow.parquet as pq
import pytest

import labelstudio_server as lss
from acd.review import push_lot, sync
from acd.review.labelstudio import LabelStudioUnavailable
from acd.review.stage import load_annotations
from acd.runstore import RunStore

pytestmark = [pytest.mark.labelstudio, pytest.mark.slow]


def result(complies=True, worse="Rejected is worse", hallucination=(), correction=None):
    r = [
        {"from_name": "chosen_complies", "to_name": "chosen", "type": "choices",
         "value": {"choices": ["Complies" if complies else "Does not comply"]}},
        {"from_name": "rejected_worse", "to_name": "rejected", "type": "choices", "value": {"choices": [worse]}},
    ]
    if hallucination:
        r.append({"from_name": "hallucination", "to_name": "chosen", "type": "choices", "value": {"choices": list(hallucination)}})
    if correction:
        r.append({"from_name": "correction", "to_name": "chosen", "type": "textarea", "value": {"text": [correction]}})
    return r


def annotator(ls, email: str) -> int:
    for u in ls.users.list():
        if u.email == email:
            return u.id
    return ls.users.create(email=email, username=email.split("@")[0]).id


def play(ls, tasks: list[dict], pairs: dict, user: int, n_bad: int, bad_correction: str | None = None) -> int:
    """Annotate a lot's tasks as `user`: the first n_bad real pairs non-compliant, every gold pair caught."""
    made = 0
    real = [t for t in tasks if not t["gold"]]
    for i, t in enumerate(real):
        worse = "Identical (q-c-c)" if pairs[t["pair_id"]]["is_qcc"] else "Rejected is worse"
        bad = i < n_bad
        ls.annotations.create(id=t["task_id"], completed_by=user, result=result(
            complies=not bad, worse=worse, hallucination=("Chosen hallucinates",) if bad else (),
            correction=bad_correction if bad and i == 0 else None))
        made += 1
    for t in tasks:
        if t["gold"]:
            ls.annotations.create(id=t["task_id"], completed_by=user, result=result(complies=False, worse="Rejected is not worse"))
            made += 1
    return made


def test_push_annotate_sync_gate_and_resume(ls_server):
    t_start = time.monotonic()
    run = ls_server.document_root / f"run-{uuid.uuid4().hex[:8]}"
    good, media_good = lss.make_lot(run, "image", "image-instance-b0", n_pairs=60, n_media=6)
    bad, media_bad = lss.make_lot(run, "video", "video-action-b0", n_pairs=60, n_media=3)
    media = {**media_good, **media_bad}
    # Own projects: the Label Studio server is shared by the whole test session (browser, webhook tests).
    cfg = ls_server.review_cfg(gold_share=0.05, project_prefix=f"ACD review {run.name}")
    ls = ls_server.client()

    info_good = push_lot(run, good, cfg, seed=7, media=media)
    info_bad = push_lot(run, bad, cfg, seed=7, media=media)
    assert (info_good["sampled"], info_good["gold"], info_good["created"]) == (47, 2, 49)  # n=203 with FPC for 60
    assert info_bad["created"] == 49 and info_bad["project_id"] != info_good["project_id"]  # one project per modality
    project = ls.projects.get(info_good["project_id"])
    assert project.task_number == 49 and "Does the chosen caption comply" in project.expert_instruction

    store = RunStore(run)
    tasks_good = store.read_part("review_tasks", "image-instance-b0").to_pylist()
    tasks_bad = store.read_part("review_tasks", "video-action-b0").to_pylist()
    # The media a task points at is served by Label Studio from the run dir (LocalFiles storage).
    task = ls.tasks.get(id=str(tasks_good[0]["task_id"]))
    assert task.data["media"].startswith("/data/local-files/?d=")
    # Nothing an annotator sees tells a planted gold pair from a real one: no flag, no pair id, same keys.
    for t in ls.tasks.list(project=info_good["project_id"], fields="all"):
        assert set(t.data) == {"media", "instruction", "chosen", "rejected", "auto", "item", "lot_id", "run_id", "modality"}
        assert "gold" not in json.dumps(t.data).lower() and "gold" not in json.dumps(t.meta or {}).lower()
    served = httpx.get(ls_server.url + task.data["media"], headers={"Authorization": f"Token {ls_server.token}"})
    assert served.status_code == 200 and served.content == (run / tasks_good[0]["media_uri"]).read_bytes()
    assert task.predictions and task.predictions[0].model_version == "acd-auto-checks"

    ann1, ann2 = annotator(ls, "ann1@acd.local"), annotator(ls, "ann2@acd.local")
    pairs_good = {r["pair_id"]: r for r in good.to_pylist()}
    pairs_bad = {r["pair_id"]: r for r in bad.to_pylist()}
    made = play(ls, tasks_good, pairs_good, ann1, n_bad=1, bad_correction="A red ball rolls left.")  # 46/47 = 97.9%
    made += play(ls, tasks_bad, pairs_bad, ann1, n_bad=9)  # 38/47 = 80.9%
    # A second annotator on ten image pairs (agrees on all but one) and on the gold pairs (misses one).
    real_good = [t for t in tasks_good if not t["gold"]]
    for i, t in enumerate(real_good[1:11]):
        worse = "Identical (q-c-c)" if pairs_good[t["pair_id"]]["is_qcc"] else "Rejected is worse"
        ls.annotations.create(id=t["task_id"], completed_by=ann2, result=result(complies=i != 0, worse=worse))
        made += 1
    gold_good = [t for t in tasks_good if t["gold"]]
    ls.annotations.create(id=gold_good[0]["task_id"], completed_by=ann2, result=result(complies=False, worse="Rejected is not worse"))
    ls.annotations.create(id=gold_good[1]["task_id"], completed_by=ann2, result=result(complies=True))
    made += 2

    decisions = {d["lot_id"]: d for d in sync(run, cfg).to_pylist()}
    g, b = decisions["image-instance-b0"], decisions["video-action-b0"]
    assert (g["decision"], g["n"], g["compliant"]) == ("accepted", 47, 45)  # the ann1/ann2 tie counts as not compliant
    assert g["compliance"] == pytest.approx(45 / 47) and g["ci_low"] < g["compliance"] < g["ci_high"]
    assert (b["decision"], b["n"], b["compliant"], b["action"]) == ("rejected", 47, 38, "drop")
    assert b["ci_high"] < 0.95
    assert g["multi_rated"] == 12 and g["agreement"] == pytest.approx(10 / 12) and g["gold_accuracy"] == pytest.approx(3 / 4)
    # The decisions table is plain parquet parts that DuckDB reads.
    table = store.sql("select lot_id, decision, compliant, n from {review_decisions} order by lot_id").to_pylist()
    assert table == [{"lot_id": "image-instance-b0", "decision": "accepted", "compliant": 45, "n": 47},
                     {"lot_id": "video-action-b0", "decision": "rejected", "compliant": 38, "n": 47}]
    reviewed = {r["pair_id"]: r for r in store.read_part("review", "image-instance-b0").to_pylist()}
    fixed = reviewed[real_good[0]["pair_id"]]
    assert fixed["chosen"] == "A red ball rolls left." and fixed["original_chosen"] == pairs_good[fixed["pair_id"]]["chosen"]
    assert fixed["reviewer"] == "ann1@acd.local" and fixed["review_decision"] == "accepted"
    statuses = [r["review_status"] for r in reviewed.values()]
    assert statuses.count("reviewed") == 47 and statuses.count("pending") == 13
    accuracy = {r["annotator"]: r for r in pq.read_table(run / "review_annotators/all/part-0.parquet").to_pylist()}
    assert accuracy["ann1@acd.local"]["gold_accuracy"] == 1.0 and accuracy["ann2@acd.local"]["gold_accuracy"] == 0.5

    # Pushing again adds no task, and a re-sync stores nothing new.
    again = push_lot(run, good, cfg, seed=7, media=media)
    assert (again["created"], again["existing"]) == (0, 49) and ls.projects.get(info_good["project_id"]).task_number == 49
    n_parts = len(list((run / "review_annotations").rglob("part-*.parquet")))
    sync(run, cfg)
    assert len(list((run / "review_annotations").rglob("part-*.parquet"))) == n_parts

    # New annotations arrive on both lots; the server dies after the first lot of a sync.
    for t in [t for t in tasks_bad if not t["gold"]][:5]:
        ls.annotations.create(id=t["task_id"], completed_by=ann2, result=result(complies=False))
        made += 1
    for t in real_good[20:23]:
        ls.annotations.create(id=t["task_id"], completed_by=ann2, result=result(complies=True, worse="Identical (q-c-c)" if pairs_good[t["pair_id"]]["is_qcc"] else "Rejected is worse"))
        made += 1
    fast_fail = {"review": {**cfg["review"], "label_studio": {**cfg["review"]["label_studio"], "retries": 2, "backoff_s": 0.2}}}
    with pytest.raises(LabelStudioUnavailable, match="did not answer while reading lot video-action-b0"):
        sync(run, fast_fail, on_lot=lambda lot: ls_server.stop())
    assert not ls_server.alive()
    stored_midway = len(load_annotations(store, "image-instance-b0")) + len(load_annotations(store, "video-action-b0"))
    assert stored_midway == made - 5  # the first lot's new annotations were kept, the second's not read yet
    restart_s = ls_server.start()
    # Label Studio restarts in the middle of the next sync: the sync waits for it (backoff) and completes.
    for t in [t for t in tasks_bad if not t["gold"]][5:7]:
        ls.annotations.create(id=t["task_id"], completed_by=ann2, result=result(complies=False))
        made += 1
    restarter = []

    def restart_after_first_lot(lot):
        if not restarter:
            ls_server.stop()
            restarter.append(threading.Thread(target=ls_server.start))
            restarter[0].start()

    patient = {"review": {**cfg["review"], "label_studio": {**cfg["review"]["label_studio"], "retries": 8, "backoff_s": 0.5}}}
    decisions = {d["lot_id"]: d for d in sync(run, patient, on_lot=restart_after_first_lot).to_pylist()}
    restarter[0].join()
    assert ls_server.alive()
    stored = [a for lot in ("image-instance-b0", "video-action-b0") for a in load_annotations(store, lot)]
    assert len(stored) == made and len({a["annotation_id"] for a in stored}) == made  # nothing lost, no duplicate
    assert sum(ls.projects.get(i).total_annotations_number for i in (info_good["project_id"], info_bad["project_id"])) == made
    assert decisions["image-instance-b0"]["decision"] == "accepted" and decisions["video-action-b0"]["decision"] == "rejected"
    print(f"\n[labelstudio] annotations={made} restart={restart_s:.1f}s starts={ls_server.start_seconds} "
          f"test={time.monotonic() - t_start:.1f}s")
