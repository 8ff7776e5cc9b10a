"""Label Studio semantics the review must get right when real people and real failures are involved (issue 12),
each against the real Label Studio server the session starts, annotators played through its REST API:
invalid, skipped and deleted annotations, a field the config lacks, corrections, sequential sampling, partial
syncs, Label Studio down during a build and during a sync."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import pytest

import labelstudio_server as lss
from acd.records import PAIR_SCHEMA, rows_to_table
from acd.review import labelstudio as lsapi
from acd.review import push_lot, sync
from acd.review.stage import load_annotations, queued_lots
from acd.review.stats import decide
from acd.runstore import RunStore

pytestmark = [pytest.mark.labelstudio, pytest.mark.slow]


def verdict(complies="Complies", worse="Rejected is worse", correction=None, skip_reason=None, extra=()):
    r = [{"from_name": "chosen_complies", "to_name": "chosen", "type": "choices", "value": {"choices": [complies]}},
         {"from_name": "rejected_worse", "to_name": "rejected", "type": "choices", "value": {"choices": [worse]}}]
    if correction:
        r.append({"from_name": "correction", "to_name": "chosen", "type": "textarea", "value": {"text": [correction]}})
    if skip_reason:
        r = [{"from_name": "skip_reason", "to_name": "chosen", "type": "textarea", "value": {"text": [skip_reason]}}]
    return r + list(extra)


def user(ls, email: str) -> int:
    for u in ls.users.list():
        if u.email == email:
            return u.id
    return ls.users.create(email=email, username=email.split("@")[0]).id


def worse_of(pair: dict) -> str:
    return "Identical (q-c-c)" if pair["is_qcc"] else "Rejected is worse"


def setup_lot(ls_server, modality="image", n_pairs=20, prefix=None, **review):
    run = ls_server.document_root / f"sem-{uuid.uuid4().hex[:8]}"
    lot = f"{modality}-sem-b0"
    pairs, media = lss.make_lot(run, modality, lot, n_pairs=n_pairs, n_media=3)
    cfg = ls_server.review_cfg(project_prefix=prefix or f"SEM {run.name}", **review)
    return run, lot, pairs, media, cfg


def test_invalid_annotations_are_excluded_and_reported_and_an_unknown_field_blocks_no_push(ls_server, monkeypatch, caplog):
    run, lot, pairs, media, cfg = setup_lot(ls_server, gold_share=0, min_gold=0)
    info = push_lot(run, pairs, cfg, seed=2, media=media)
    ls = ls_server.client()
    ann = user(ls, "ann1@acd.local")
    tasks = RunStore(run).read_part("review_tasks", lot).to_pylist()
    by_pair = {r["pair_id"]: r for r in pairs.to_pylist()}
    valid = tasks[:5]
    for t in valid:
        ls.annotations.create(id=t["task_id"], completed_by=ann, result=verdict(worse=worse_of(by_pair[t["pair_id"]])))
    bad = {  # what Label Studio's API accepts without checking it against the labelling config
        tasks[5]["task_id"]: verdict(complies="Maybe"),
        tasks[6]["task_id"]: [],
        tasks[7]["task_id"]: [dict(r, from_name="complies_v2") if r["from_name"] == "chosen_complies" else r for r in verdict()],
        tasks[8]["task_id"]: verdict()[:1],
    }
    for task_id, result in bad.items():
        ls.annotations.create(id=task_id, completed_by=ann, result=result)

    d = sync(run, cfg).to_pylist()[0]
    # Before: 5 compliant of 9 "measured", the four invalid ones counted as "Does not comply".
    assert (d["n"], d["compliant"], d["invalid"]) == (5, 5, 4)
    issues = RunStore(run).read_part("review_issues", lot).to_pylist()
    reasons = {i["task_id"]: i["reason"] for i in issues if i["kind"] == "invalid"}
    assert reasons == {tasks[5]["task_id"]: "unknown choice 'Maybe' in chosen_complies", tasks[6]["task_id"]: "empty result",
                       tasks[7]["task_id"]: "unknown field 'complies_v2'; no chosen_complies verdict",
                       tasks[8]["task_id"]: "no rejected_worse verdict"}
    assert "4 invalid annotations excluded" in d["note"]

    # The project now holds an annotation whose field the config lacks: further pushes still go through.
    more, more_media = lss.make_lot(run, "image", "image-sem-b1", n_pairs=6, n_media=2)
    again = push_lot(run, more, cfg, seed=2, media=more_media)
    assert again["project_id"] == info["project_id"] and again["created"] == 6
    # A changed config that Label Studio refuses because of that annotation: the push goes on, with a warning.
    changed = lsapi.label_config("image").replace("</View>\n", "<Header value=\"(v2)\"/>\n</View>\n")
    monkeypatch.setattr(lsapi, "label_config", lambda modality: changed)
    caplog.set_level("WARNING")
    third, third_media = lss.make_lot(run, "image", "image-sem-b2", n_pairs=4, n_media=2)
    assert push_lot(run, third, cfg, seed=2, media=third_media)["created"] == 4
    assert "keeps its labeling config" in caplog.text
    assert sorted(d["lot_id"] for d in sync(run, cfg).to_pylist()) == ["image-sem-b0", "image-sem-b1", "image-sem-b2"]


def test_deleted_annotations_stop_counting_and_skips_reach_the_run(ls_server):
    run, lot, pairs, media, cfg = setup_lot(ls_server, gold_share=0, min_gold=0)
    push_lot(run, pairs, cfg, seed=3, media=media)
    ls = ls_server.client()
    a1, a2 = user(ls, "ann1@acd.local"), user(ls, "ann2@acd.local")
    store = RunStore(run)
    tasks = store.read_part("review_tasks", lot).to_pylist()
    by_pair = {r["pair_id"]: r for r in pairs.to_pylist()}
    for t in tasks[:4]:
        ls.annotations.create(id=t["task_id"], completed_by=a1, result=verdict(worse=worse_of(by_pair[t["pair_id"]])))
    wrong = ls.annotations.create(id=tasks[0]["task_id"], completed_by=a2, result=verdict(complies="Does not comply"))
    # Skipped as the guideline asks: the reason typed into the form, then Skip (a cancelled annotation).
    ls.annotations.create(id=tasks[5]["task_id"], completed_by=a2, was_cancelled=True,
                          result=verdict(skip_reason="the video does not play"))
    d = sync(run, cfg).to_pylist()[0]
    assert (d["n"], d["compliant"], d["skipped"], d["multi_rated"]) == (4, 3, 1, 1)  # the 1:1 tie is not compliant

    ls.annotations.delete(id=wrong.id)
    d = sync(run, cfg).to_pylist()[0]
    assert (d["n"], d["compliant"], d["deleted"], d["multi_rated"], d["skipped"]) == (4, 4, 1, 0, 1)
    kept = {a["annotation_id"]: a for a in load_annotations(store, lot, include_deleted=True)}
    assert kept[wrong.id]["deleted"] and wrong.id not in {a["annotation_id"] for a in load_annotations(store, lot)}
    parts = len(list((run / "review_annotations").rglob("part-*.parquet")))
    sync(run, cfg)  # nothing changed: nothing stored
    assert len(list((run / "review_annotations").rglob("part-*.parquet"))) == parts
    issues = store.read_part("review_issues", lot).to_pylist()
    skip = [i for i in issues if i["kind"] == "skipped"]
    assert skip == [dict(skip[0], task_id=tasks[5]["task_id"], annotator="ann2@acd.local", reason="the video does not play")]
    accuracy = {r["annotator"]: r for r in store.read_part("review_annotators", "all").to_pylist()}
    assert accuracy["ann2@acd.local"]["skipped"] == 1 and accuracy["ann2@acd.local"]["annotations"] == 0


def test_corrections_are_rechecked_and_noncompliant_pairs_never_ship_unchanged(ls_server):
    run = ls_server.document_root / f"fix-{uuid.uuid4().hex[:8]}"
    lot = "image-fix-b0"
    pairs, media = lss.make_lot(run, "image", lot, n_pairs=20, n_media=3)
    rows = pairs.to_pylist()
    for r in rows[1:4]:  # "exactly 10 words" pairs whose chosen caption has 10 words
        r.update(length_key="word_exact:10", instruction=r["instruction"] + " Use exactly 10 words.",
                 chosen="A red object moves slowly across a wide blue field.")
    pairs = rows_to_table(rows, PAIR_SCHEMA)
    cfg = ls_server.review_cfg(gold_share=0, min_gold=0, project_prefix=f"FIX {run.name}")
    push_lot(run, pairs, cfg, seed=5, media=media)
    ls = ls_server.client()
    a1 = user(ls, "ann1@acd.local")
    store = RunStore(run)
    task_of = {t["pair_id"]: t["task_id"] for t in store.read_part("review_tasks", lot).to_pylist()}
    p = {r["pair_id"]: r for r in rows}
    ids = sorted(task_of)
    qcc, eleven, ten, plain = ids[0], ids[1], ids[2], ids[3]  # make_lot: every fifth pair (p000) is q-c-c
    assert p[qcc]["is_qcc"] and not p[eleven]["is_qcc"]
    answers = {
        qcc: verdict("Does not comply", "Identical (q-c-c)", correction="A red ball rolls to the left."),
        eleven: verdict("Does not comply", correction="A red object moves very slowly across a wide blue field."),
        ten: verdict("Does not comply", correction="A small red object glides across a wide blue field."),
        plain: verdict("Does not comply"),
    }
    for pid in ids:
        ls.annotations.create(id=task_of[pid], completed_by=a1, result=answers.get(pid) or verdict(worse=worse_of(p[pid])))
    d = sync(run, cfg).to_pylist()[0]
    out = {r["pair_id"]: r for r in store.read_part("review", lot).to_pylist()}
    assert out[qcc]["chosen"] == out[qcc]["rejected"] == "A red ball rolls to the left." and out[qcc]["check_passed"]
    assert out[ten]["chosen"] == "A small red object glides across a wide blue field." and out[ten]["check_passed"]
    assert out[eleven]["chosen"] == p[eleven]["chosen"] and not out[eleven]["check_passed"]  # 11 words: refused
    assert not out[plain]["check_passed"] and "review_not_compliant" in out[plain]["check_failures"]
    assert (d["corrected"], d["refused_corrections"], d["dropped"]) == (2, 1, 2)
    refused = [i for i in store.read_part("review_issues", lot).to_pylist() if i["kind"] == "correction_refused"]
    assert [(i["pair_id"], i["reason"]) for i in refused] == [(eleven, "length_chosen")]

    # What an accepted lot exports then passes `acd validate`'s pair invariants.
    from acd.checks.length import satisfies
    from acd.taxonomy import LengthConstraint

    for r in out.values():
        if r["check_passed"]:
            assert r["is_qcc"] == (r["chosen"] == r["rejected"])
            assert r["length_key"] == "none" or satisfies(r["chosen"], LengthConstraint.from_key(r["length_key"]))


def test_needs_more_pushes_further_samples_until_the_lot_is_decided(ls_server):
    run, lot, pairs, media, cfg = setup_lot(ls_server, n_pairs=40, gold_share=0, min_gold=0)
    info = push_lot(run, pairs, cfg, seed=9, media=media)
    n0 = info["sampled"]
    assert n0 == 34 and decide(32, n0, bar=0.95, confidence=0.95, margin=0.03, population=40)["decision"] == "needs_more"
    ls = ls_server.client()
    a1 = user(ls, "ann1@acd.local")
    store = RunStore(run)
    by_pair = {r["pair_id"]: r for r in pairs.to_pylist()}

    def answer(tasks, bad=0):
        for i, t in enumerate(tasks):
            ls.annotations.create(id=t["task_id"], completed_by=a1, result=verdict(
                "Does not comply" if i < bad else "Complies", worse_of(by_pair[t["pair_id"]])))

    first = store.read_part("review_tasks", lot).to_pylist()
    answer(first[:-1], bad=2)
    d = sync(run, cfg).to_pylist()[0]
    assert d["human_decision"] == "needs_more" and d["rounds"] == 1  # one task still open: wait for it
    answer(first[-1:])
    d = sync(run, cfg).to_pylist()[0]  # 32/34, interval straddles the bar: a further sample goes out
    tasks = store.read_part("review_tasks", lot).to_pylist()
    assert len(tasks) == 40 and d["rounds"] == 2 and "further sample pushed: 6 tasks (round 1)" in d["note"]
    assert ls.projects.get(info["project_id"]).task_number == 40 and d["pending"] and d["decision"] == "accepted"
    answer([t for t in tasks if t["round"] == 1])
    d = sync(run, cfg).to_pylist()[0]  # the whole lot reviewed: its exact compliance decides
    assert (d["n"], d["compliant"], d["compliance"], d["ci_low"], d["ci_high"]) == (40, 38, 0.95, 0.95, 0.95)
    assert (d["decision"], d["pending"], d["human_decision"]) == ("rejected", False, "rejected")  # not above 95%


def _cli(*args: str, env_extra: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "ACD_WORKERS": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "acd.cli", *args], capture_output=True, text=True, env=env,
                          cwd=lss.ROOT, timeout=timeout)


def test_build_goes_on_while_label_studio_is_down_and_pushes_later(ls_server, tiny_overrides, tmp_path):
    fwd = lss.Forwarder(ls_server.port)  # Label Studio's URL in the recipe: nothing listens there yet
    run = ls_server.document_root / f"down-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "out"
    review = ls_server.review_cfg(project_prefix=f"DOWN {run.name}")["review"]
    review["label_studio"].update(url=fwd.url, retries=3, backoff_s=0.2)
    small = {**tiny_overrides, "pairs": {"image": 5, "video": 0, "audio": 0}, "review": review}
    sets = [f"{k}={json.dumps(v)}" for k, v in small.items()]
    build = ["build", "--recipe", "demo", "--out", str(out), "--run-dir", str(run), *sum((["--set", s] for s in sets), [])]

    t0 = time.monotonic()
    first = _cli(*build)
    down_s = time.monotonic() - t0
    assert first.returncode == 0, first.stderr[-3000:]
    said = [line for line in first.stderr.splitlines() if "Label Studio" in line]
    assert len(said) == 1 and f"Label Studio at {fwd.url} is unreachable" in said[0] and "queued" in said[0], first.stderr[-2000:]
    assert "Traceback" not in first.stderr
    lots = RunStore(run).lots("review_decisions")
    assert queued_lots(run) == lots and len(lots) >= 3
    card = (out / "README.md").read_text()
    assert "Human review is pending" in card and json.loads((out / "manifest.json").read_text())["counts"]["pairs"] > 0

    fwd.start()  # Label Studio is back: the next build pushes what was queued
    try:
        t0 = time.monotonic()
        again = _cli(*build)
        up_s = time.monotonic() - t0
        assert again.returncode == 0, again.stderr[-3000:]
        assert queued_lots(run) == [] and RunStore(run).lots("review_tasks") == lots
        ls = ls_server.client()
        projects = {t["project_id"] for lot in lots for t in RunStore(run).read_part("review_tasks", lot).to_pylist()}
        n_tasks = sum(RunStore(run).read_part("review_tasks", lot).num_rows for lot in lots)
        assert sum(ls.projects.get(p).task_number for p in projects) == n_tasks
    finally:
        fwd.stop()

    # A sync while it is down: retried with backoff, then one clear sentence, no traceback, nothing lost.
    t0 = time.monotonic()
    stopped = _cli("review", "sync", "--run-dir", str(run), "--out", str(out))
    assert stopped.returncode == 1 and time.monotonic() - t0 >= 0.2 + 0.4
    assert "Traceback" not in stopped.stderr and f"Label Studio at {fwd.url} did not answer" in stopped.stderr
    assert stopped.stderr.strip().count("\n") == 0, stopped.stderr
    fwd.start()
    try:
        ok = _cli("review", "sync", "--run-dir", str(run), "--out", str(out))
    finally:
        fwd.stop()
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert all(f"{lot:<28}" in ok.stdout for lot in lots) and "gold –" in ok.stdout
    print(f"\n[review-down] build with Label Studio down {down_s:.1f}s, rebuild pushing the queue {up_s:.1f}s, "
          f"lots {len(lots)}, tasks {n_tasks}")


def test_two_annotators_four_kinds_of_lot_and_a_restart_between_syncs(ls_server, tiny_overrides, tmp_path, monkeypatch):
    """The issue's acceptance scenario: through a real build, two annotators, one lot compliant, one failing,
    one partially annotated, one with an invalid and a deleted annotation, Label Studio restarted between
    syncs. Decisions, counts and the export are exactly what the annotations say; the card and the report
    show gold accuracy, agreement and intervals."""
    from acd.pipeline import Build, run_build

    monkeypatch.setenv("ACD_WORKERS", "1")
    run = ls_server.document_root / f"accept-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "out"
    review = ls_server.review_cfg(project_prefix=f"ACCEPT {run.name}")["review"]
    run_build("demo", out, run_dir=run, overrides={**tiny_overrides, "pairs": {"image": 100, "video": 0, "audio": 0},
                                                   "review": review})
    store = RunStore(run)
    lots = [lot for lot in store.lots("review_tasks") if store.read_part("review_input", lot).num_rows >= 8]
    compliant, failing, partial, messy = lots[:4]
    ls = ls_server.client()
    a1, a2 = user(ls, "ann1@acd.local"), user(ls, "ann2@acd.local")
    tasks = {lot: store.read_part("review_tasks", lot).to_pylist() for lot in lots}
    pairs = {r["pair_id"]: r for lot in lots for r in store.read_part("review_input", lot).to_pylist()}

    def answer(t, who, ok=True, correction=None):
        gold = t["gold"]
        ls.annotations.create(id=t["task_id"], completed_by=who, result=verdict(
            "Does not comply" if (gold or not ok) else "Complies",
            "Rejected is not worse" if gold else worse_of(pairs[t["pair_id"]]), correction=correction))
        return t["pair_id"]

    real = {lot: [t for t in tasks[lot] if not t["gold"]] for lot in lots}
    gold = {lot: [t for t in tasks[lot] if t["gold"]] for lot in lots}
    # ann1 edits two captions it accepts: a q-c-c pair's (its rejected caption must follow) and a q-a-c pair's
    # with the text of its rejected caption (refused by the chosen-vs-rejected check; the original stays).
    qcc_edit = next(t for t in real[compliant] if pairs[t["pair_id"]]["is_qcc"])
    qac_edit = next(t for t in real[compliant] if not pairs[t["pair_id"]]["is_qcc"])
    edits = {qcc_edit["pair_id"]: "A small shape sits near the centre of the picture.",
             qac_edit["pair_id"]: pairs[qac_edit["pair_id"]]["rejected"]}
    for t in tasks[compliant]:
        answer(t, a1, correction=edits.get(t["pair_id"]))  # every real pair complies; the gold pair is caught
    for t in real[compliant][:4]:
        answer(t, a2)  # ann2 agrees on four
    for i, t in enumerate(real[failing]):
        answer(t, a1, ok=i % 2 == 0)  # half the pairs do not comply
    answer(gold[failing][0], a1)
    for i, t in enumerate(real[failing][:4]):
        answer(t, a2, ok=i % 2 == 0 and i != 0)  # agrees on three, disagrees on the first (ann1: complies)
    ls.annotations.create(id=gold[failing][0]["task_id"], completed_by=a2, result=verdict())  # ann2 misses the gold pair
    for t in real[partial][:3]:  # three of ~11: the interval still straddles the bar
        answer(t, a1)
    for t in real[messy][1:]:
        answer(t, a1)
    ls.annotations.create(id=real[messy][0]["task_id"], completed_by=a1, result=verdict(complies="Maybe"))  # invalid
    doubt = ls.annotations.create(id=real[messy][1]["task_id"], completed_by=a2, result=verdict(complies="Does not comply"))

    first = {d["lot_id"]: d for d in sync(run, {"review": review}).to_pylist()}
    assert first[messy]["decision"] == "rejected" and first[messy]["invalid"] == 1  # the 1:1 tie is not compliant

    ls_server.stop()
    ls_server.start()
    ls.annotations.delete(id=doubt.id)
    res = _cli("review", "sync", "--run-dir", str(run), "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    d = {x["lot_id"]: x for x in store.sql("select * from {review_decisions}").to_pylist()}

    n_c, n_f, n_m = len(real[compliant]), len(real[failing]), len(real[messy])
    assert (d[compliant]["decision"], d[compliant]["pending"], d[compliant]["n"], d[compliant]["compliant"]) == ("accepted", False, n_c, n_c)
    assert d[compliant]["agreement"] == 1.0 and d[compliant]["gold_accuracy"] == 1.0 and d[compliant]["reviewers"] == 2
    assert (d[failing]["decision"], d[failing]["pending"], d[failing]["n"]) == ("rejected", False, n_f)
    assert d[failing]["compliant"] == (n_f + 1) // 2 - 1  # ann1's "complies" on the first pair now ties with ann2's "no"
    assert d[failing]["multi_rated"] == 5 and d[failing]["agreement"] == pytest.approx(3 / 5)  # 4 real + the gold pair
    assert d[failing]["gold_accuracy"] == 0.5 and d[failing]["kappa"] is not None
    _, auto_partial = __import__("acd.review.gate", fromlist=["review_lot"]).review_lot(
        store.read_part("review_input", partial), {"review": review}, int(tasks[partial][0]["seed"]))
    assert (d[partial]["decision"], d[partial]["pending"], d[partial]["human_decision"], d[partial]["n"]) == \
        (auto_partial["decision"], True, "needs_more", 3)
    assert (d[messy]["decision"], d[messy]["n"], d[messy]["compliant"], d[messy]["invalid"], d[messy]["deleted"]) == \
        ("accepted", n_m - 1, n_m - 1, 1, 1)
    for lot in set(store.lots("review_decisions")) - set(lots[:4]):
        assert d[lot]["mode"] == "auto" and d[lot]["pending"]  # not annotated yet: the automatic decision stands

    # Every annotation Label Studio holds for the run is stored once; the deleted one no longer counts.
    held = {a["id"] for lot in lots for t in ls.tasks.list(project=tasks[lot][0]["project_id"], fields="all",
                                                         query=lsapi._filter(("filter:tasks:data.lot_id", "equal", "String", lot)))
            for a in (t.annotations or [])}
    stored = [a["annotation_id"] for lot in lots for a in load_annotations(store, lot)]
    assert sorted(stored) == sorted(held) and len(set(stored)) == len(stored) and doubt.id not in held

    # The export is exactly the accepted lots' pairs that passed the checks, less what annotators rejected.
    gen = {lot: store.read_part("generate", lot).to_pylist() for lot in store.lots("generate")}
    expected = 0
    for lot, rows in gen.items():
        if d[lot]["decision"] == "accepted":
            expected += sum(1 for r in rows if r["check_passed"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["pairs"] == expected
    from acd.stages.export import accepted_pairs

    exported = {r["pair_id"] for r in accepted_pairs(Build.from_run_dir(run, out)).to_pylist()}
    assert not exported & {r["pair_id"] for r in gen[failing]}
    assert bool(exported & {r["pair_id"] for r in gen[partial]}) == (auto_partial["decision"] == "accepted")

    review_rows = {r["pair_id"]: r for r in store.read_part("review", compliant).to_pylist()}
    fixed = review_rows[qcc_edit["pair_id"]]
    assert fixed["chosen"] == fixed["rejected"] == edits[qcc_edit["pair_id"]] and fixed["original_chosen"]
    assert review_rows[qac_edit["pair_id"]]["chosen"] == pairs[qac_edit["pair_id"]]["chosen"]
    assert (d[compliant]["corrected"], d[compliant]["refused_corrections"]) == (1, 1)
    valid = _cli("validate", str(out))
    assert valid.returncode == 0 and valid.stdout.strip().endswith("valid"), valid.stdout[-2000:]

    card = (out / "README.md").read_text()
    assert "Distinct reviewers: 2." in card and "Human review is pending for" in card
    # a lot people judged shows compliance; its "passed automatic checks" column is empty (–)
    assert f"| {compliant} | label_studio | accepted | {n_c}/{n_c} | – | 1.000 | [1.000, 1.000] | 1.000 | 1.000 |" in card
    assert "| ann2@acd.local |" in card and "| kappa |" in card
    report = (out / "report.html").read_text()
    assert "Review: annotators" in report and "ann2@acd.local" in report
    assert "unknown choice &#x27;Maybe&#x27; in chosen_complies" in report or "unknown choice 'Maybe' in chosen_complies" in report
    assert f"gold 1.000 agreement 1.000" in res.stdout and "annotator ann2@acd.local" in res.stdout


def test_regenerated_captions_replace_their_tasks_and_old_tasks_lose_their_markers(ls_server):
    """A lot pushed again with new captions (regenerated) gets new tasks, the old ones leave Label Studio
    and their verdicts stop counting; a task pushed before item ids existed (its data named the pair and
    flagged gold) is adopted, and its data rewritten without them."""
    run, lot, pairs, media, cfg = setup_lot(ls_server, n_pairs=8, gold_share=0, min_gold=0)
    push_lot(run, pairs, cfg, seed=4, media=media)
    ls = ls_server.client()
    a1 = user(ls, "ann1@acd.local")
    store = RunStore(run)
    old = store.read_part("review_tasks", lot).to_pylist()
    by_pair = {r["pair_id"]: r for r in pairs.to_pylist()}
    for t in old:
        ls.annotations.create(id=t["task_id"], completed_by=a1, result=verdict("Does not comply", worse_of(by_pair[t["pair_id"]])))
    assert sync(run, cfg).to_pylist()[0]["human_decision"] == "rejected"

    # A legacy task: what the previous version pushed for the first pair.
    legacy_row = dict(by_pair[old[0]["pair_id"]])
    ls.tasks.delete(id=str(old[0]["task_id"]))
    legacy = ls.tasks.create(project=old[0]["project_id"], data={
        "media": ls.tasks.get(id=str(old[1]["task_id"])).data["media"], "instruction": legacy_row["instruction"],
        "chosen": legacy_row["chosen"], "rejected": legacy_row["rejected"], "auto": "x", "pair_id": legacy_row["pair_id"],
        "lot_id": lot, "run_id": old[0]["run_id"], "modality": "image", "gold": False})
    rows = pairs.to_pylist()
    for r in (r for r in rows if r["pair_id"] != legacy_row["pair_id"]):  # regenerated under the same pair_ids
        r["chosen"] = r["chosen"].replace("moves across", "drifts over")
        if r["is_qcc"]:
            r["rejected"] = r["chosen"]
    info = push_lot(run, rows_to_table(rows, PAIR_SCHEMA), cfg, seed=4, media=media)
    assert (info["created"], info["stale_removed"], info["existing"]) == (7, 7, 1)
    adopted = ls.tasks.get(id=str(legacy.id))
    assert "gold" not in adopted.data and "pair_id" not in adopted.data and adopted.data["item"]
    new = {t["pair_id"]: t["task_id"] for t in store.read_part("review_tasks", lot).to_pylist()}
    assert new[legacy_row["pair_id"]] == legacy.id and not set(new.values()) & {t["task_id"] for t in old[1:]}
    d = sync(run, cfg).to_pylist()[0]
    # The old verdicts were about other captions: no verdict on the new ones yet, nothing "deleted" either.
    assert (d["mode"], d["human_decision"], d["reviewers"], d["deleted"]) == ("auto", None, 0, 0)
