"""Label Studio's webhook starts the review sync: push a lot with review.label_studio.webhook_url set, annotate
through the API as annotators do, and the run dir fills with annotations and decisions without anyone calling
sync. Real Label Studio (session fixture), real webhook server (uvicorn on a free port, in a thread)."""
from __future__ import annotations

import threading
import time
import uuid

import httpx
import pytest

import labelstudio_server as lss
from acd.review import push_lot
from acd import review_webhook as wh
from acd.review.stage import load_annotations, run_id_of
from acd.runstore import RunStore

pytestmark = [pytest.mark.labelstudio, pytest.mark.slow]

SECRET = "s3cret-" + uuid.uuid4().hex
LOT = "image-webhook-b0"


class HookServer:
    """create_app on uvicorn in a daemon thread; the dispatcher is inspected directly by the test."""

    def __init__(self, dispatcher: wh.Dispatcher, secret: str):
        import uvicorn

        self.dispatcher = dispatcher
        self.port = lss.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(wh.create_app(dispatcher, secret), host="127.0.0.1",
                                                    port=self.port, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "webhook server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)

    def runs(self) -> dict:
        return self.dispatcher.debouncer.snapshot()


def annotate(ls, task_id: int, user: int, complies: bool = True, qcc: bool = False):
    worse = "Identical (q-c-c)" if qcc else "Rejected is worse"
    return ls.annotations.create(id=task_id, completed_by=user, result=[
        {"from_name": "chosen_complies", "to_name": "chosen", "type": "choices",
         "value": {"choices": ["Complies" if complies else "Does not comply"]}},
        {"from_name": "rejected_worse", "to_name": "rejected", "type": "choices", "value": {"choices": [worse]}}])


def poll(cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout}s: {what}")


@pytest.fixture
def hook_env(tmp_path, monkeypatch):
    monkeypatch.setenv(wh.SECRET_ENV, SECRET)
    monkeypatch.setenv(wh.STATE_ENV, str(tmp_path / "webhook-state"))
    return tmp_path / "webhook-state"


def test_annotations_start_the_sync_through_the_webhook(ls_server, hook_env, caplog):
    caplog.set_level("DEBUG")
    t0 = time.monotonic()
    run = ls_server.document_root / f"run-wh-{uuid.uuid4().hex[:8]}"
    pairs, media = lss.make_lot(run, "image", LOT, n_pairs=24, n_media=3)
    cfg = ls_server.review_cfg(gold_share=0.05)
    dispatcher = wh.Dispatcher(wh.sync_in_process, delay=0.5)  # the registry in $ACD_REVIEW_STATE_DIR
    ls = ls_server.client()
    hook_ids = []
    with HookServer(dispatcher, SECRET) as srv:
        # Own project title: the other Label Studio tests count tasks in the default projects.
        cfg["review"]["label_studio"].update(webhook_url=srv.url + wh.PATH, project_prefix=f"ACD webhook {uuid.uuid4().hex[:6]}")
        try:
            t_push = time.monotonic()
            info = push_lot(run, pairs, cfg, seed=3, media=media)
            push_s = time.monotonic() - t_push
            project = info["project_id"]
            hooks = [w for w in ls.webhooks.list(project=str(project)) if w.url == srv.url + wh.PATH]
            hook_ids = [w.id for w in hooks]
            assert len(hooks) == 1 and hooks[0].send_payload and hooks[0].headers == {wh.SECRET_HEADER: SECRET}
            assert set(hooks[0].actions) == set(wh.ACTIONS)
            entry = wh.known_runs()[run_id_of(run)]
            assert entry["run_dir"] == str(run.resolve()) and entry["projects"] == [project]
            assert "token" not in entry["review"]["label_studio"] and SECRET not in str(entry)
            again = push_lot(run, pairs, cfg, seed=3, media=media)  # idempotent: no second task, no second hook
            assert again["created"] == 0 and [w.id for w in ls.webhooks.list(project=str(project))
                                              if w.url == srv.url + wh.PATH] == hook_ids
            assert srv.runs() == {}  # pushing annotates nothing: no event, no sync

            # Without the secret (or with a wrong one) nothing happens, even for a payload naming the run.
            forged = {"action": "ANNOTATION_CREATED", "project": {"id": project},
                      "task": {"id": 1, "data": {"run_id": run_id_of(run), "lot_id": LOT}}, "annotation": {"id": 1}}
            for headers in ({}, {wh.SECRET_HEADER: "wrong"}, {wh.SECRET_HEADER: SECRET + "x"}):
                r = httpx.post(srv.url + wh.PATH, json=forged, headers=headers)
                assert r.status_code == 403 and SECRET not in r.text
            time.sleep(0.8)
            assert srv.runs() == {} and not (run / "review_annotations").exists()
            assert httpx.get(srv.url + "/health").json() == {"status": "UP", "runs": {}}
            # With it, a run the registry does not know is answered (fast: Label Studio waits 1 s) and ignored.
            t_post = time.monotonic()
            r = httpx.post(srv.url + wh.PATH, headers={wh.SECRET_HEADER: SECRET}, json={
                "action": "ANNOTATION_CREATED", "task": {"data": {"run_id": "nope-00000000"}}})
            assert r.status_code == 200 and r.json()["runs"] == {} and r.json()["unknown"] == ["nope-00000000"]
            assert time.monotonic() - t_post < 0.5

            # Annotators at work: every create fires a webhook inside the request; the sync is never called here.
            tasks = RunStore(run).read_part("review_tasks", LOT).to_pylist()
            by_id = {r["pair_id"]: r for r in pairs.to_pylist()}
            user = next((u.id for u in ls.users.list() if u.email == "whann@acd.local"), None) or \
                ls.users.create(email="whann@acd.local", username="whann").id
            t_ann = time.monotonic()
            made = []
            for t in tasks:
                made.append(annotate(ls, t["task_id"], user, complies=t["gold"] is False, qcc=by_id[t["pair_id"]]["is_qcc"]
                                     if not t["gold"] else False))
            annotate_s = time.monotonic() - t_ann
            store = RunStore(run)

            def decided():
                if not store.has_part("review_decisions", LOT) or srv.runs().get(run_id_of(run), {}).get("running"):
                    return None
                d = store.read_part("review_decisions", LOT).to_pylist()[0]
                return d if d["n"] == info["sampled"] else None

            decision = poll(decided, 60, "the webhook-driven sync stored every annotation")
            reach_s = time.monotonic() - t_ann
            assert decision["decision"] == "accepted" and decision["mode"] == "label_studio" and decision["compliance"] == 1.0
            assert {a["annotation_id"] for a in load_annotations(store, LOT)} == {a.id for a in made}
            st = srv.runs()[run_id_of(run)]
            # Coalesced: a round waits `delay` (0.5 s) before it syncs, so a burst costs at most one sync per 0.5 s.
            assert st["errors"] == 0 and st["events"] >= len(tasks) and 1 <= st["syncs"] <= annotate_s / 0.5 + 2, st
            assert httpx.get(srv.url + "/health").json()["runs"][run_id_of(run)]["syncs"] == st["syncs"]

            # An annotator changes their mind: ANNOTATION_UPDATED reaches the run dir the same way.
            real = next(t for t in tasks if not t["gold"])
            changed = next(a for a in made if a.task == real["task_id"])
            syncs_before = st["syncs"]
            ls.annotations.update(id=changed.id, result=[
                {"from_name": "chosen_complies", "to_name": "chosen", "type": "choices", "value": {"choices": ["Does not comply"]}},
                {"from_name": "rejected_worse", "to_name": "rejected", "type": "choices", "value": {"choices": ["Rejected is worse"]}}])
            latest = poll(lambda: next((a for a in load_annotations(store, LOT) if a["annotation_id"] == changed.id
                                        and a["chosen_complies"] is False), None), 30, "the updated annotation")
            assert latest["pair_id"] == real["pair_id"]
            poll(lambda: store.read_part("review_decisions", LOT).to_pylist()[0]["compliant"] == info["sampled"] - 1, 30,
                 "the decision counts the changed verdict")
            # A deletion names no task, only the project: the runs that pushed there are synced.
            gold = next(a for a, t in zip(made, tasks) if t["gold"])
            ls.annotations.delete(id=gold.id)
            poll(lambda: (lambda s: s["syncs"] > syncs_before + 1 and not s["running"])(srv.runs()[run_id_of(run)]), 30,
                 "a sync after ANNOTATIONS_DELETED")
            assert dispatcher.debouncer.wait_idle(30) and srv.runs()[run_id_of(run)]["errors"] == 0
            print(f"\n[webhook] tasks={len(tasks)} push={push_s:.1f}s annotate={annotate_s:.1f}s decisions_after={reach_s:.1f}s "
                  f"syncs={srv.runs()[run_id_of(run)]['syncs']} events={srv.runs()[run_id_of(run)]['events']} "
                  f"test={time.monotonic() - t0:.1f}s")
        finally:
            for i in hook_ids:  # the session's server outlives this test
                ls.webhooks.delete(id=i)
            dispatcher.debouncer.wait_idle(30)
    assert "webhook sync" in caplog.text and SECRET not in caplog.text


def test_debouncer_one_in_flight_one_queued(tmp_path):
    """A burst while a sync runs coalesces into exactly one more sync; never two at once per run."""
    calls, active, peak = [], [0], [0]
    lock = threading.Lock()

    def work(target):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.3)
        calls.append(target.run_id)
        with lock:
            active[0] -= 1

    d = wh.Debouncer(work, delay=0.05)
    t = wh.Target("r-1", tmp_path, {})
    answers = [d.trigger(t)]
    time.sleep(0.15)  # the first sync is running now
    answers += [d.trigger(t) for _ in range(20)]
    assert answers[0] == "started" and answers[1] == "queued" and set(answers[2:]) == {"coalesced"}
    assert d.wait_idle(5)
    assert calls == ["r-1", "r-1"] and peak[0] == 1 and d.snapshot()["r-1"]["events"] == 21


@pytest.mark.prefect_server
def test_webhook_runs_the_sync_reviews_deployment(ls_server, prefect_stack, tmp_path):
    """--prefect: the webhook (its own process, PREFECT_API_URL set) starts `sync-reviews/default` runs on the
    real Prefect server; the worker's flow run syncs the run dir. The token reaches the worker by a Secret block."""
    import json
    import os
    import subprocess
    import sys

    import yaml

    from acd.recipe import load_recipe

    t0 = time.monotonic()
    env = dict(prefect_stack.env, ACD_LS_TOKEN_FOR_BLOCK=ls_server.token)
    subprocess.run([sys.executable, "-c", "import os; from prefect.blocks.system import Secret; "
                    "Secret(value=os.environ['ACD_LS_TOKEN_FOR_BLOCK']).save('acd-wh-ls-token', overwrite=True)"],
                   env=env, check=True, timeout=120, capture_output=True)
    state = tmp_path / "state"
    port = lss.free_port()
    url = f"http://127.0.0.1:{port}"
    run = ls_server.document_root / f"run-whp-{uuid.uuid4().hex[:8]}"
    pairs, media = lss.make_lot(run, "image", "image-whprefect-b0", n_pairs=12, n_media=2)
    review = {"compliance_bar": 0.95, "gold_share": 0.05, "label_studio": {
        "url": ls_server.url, "token_env": "ACD_WH_UNSET_TOKEN", "token_secret": "acd-wh-ls-token",
        "document_root": str(ls_server.document_root), "webhook_url": url + wh.PATH,
        "project_prefix": f"ACD webhook {uuid.uuid4().hex[:6]}"}}
    recipe = {**load_recipe("demo").effective(), "review": review}  # the recipe is a frozen model: its mapping
    (run / "recipe.json").write_text(json.dumps(recipe))  # what the deployment's flow loads

    proc_env = {k: v for k, v in prefect_stack.env.items() if k != wh.SECRET_ENV}
    proc_env.update({wh.SECRET_ENV: SECRET, wh.STATE_ENV: str(state)})
    log = open(tmp_path / "webhook.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "acd.review_webhook", "--port", str(port), "--prefect", "--delay", "0.5"],
                            env=proc_env, stdout=log, stderr=subprocess.STDOUT, cwd=lss.ROOT)
    hook_ids = []
    ls = ls_server.client()
    saved = {k: os.environ.get(k) for k in (wh.SECRET_ENV, wh.STATE_ENV)}
    os.environ.update({wh.SECRET_ENV: SECRET, wh.STATE_ENV: str(state)})
    try:
        deadline = time.monotonic() + 60
        while not _up(url):
            assert proc.poll() is None, (tmp_path / "webhook.log").read_text()
            assert time.monotonic() < deadline, "webhook process did not answer /health"
            time.sleep(0.2)
        info = push_lot(run, pairs, {"review": review}, seed=5, media=media, client=ls)  # token: this process has no Secret block
        hook_ids = [w.id for w in ls.webhooks.list(project=str(info["project_id"])) if w.url == url + wh.PATH]
        assert wh.known_runs(state)[run_id_of(run)]["recipe"] == str((run / "recipe.json").resolve())
        tasks = RunStore(run).read_part("review_tasks", "image-whprefect-b0").to_pylist()
        by_id = {r["pair_id"]: r for r in pairs.to_pylist()}
        user = next((u.id for u in ls.users.list() if u.email == "whann@acd.local"), None) or \
            ls.users.create(email="whann@acd.local", username="whann").id
        for t in tasks:
            annotate(ls, t["task_id"], user, complies=not t["gold"], qcc=not t["gold"] and by_id[t["pair_id"]]["is_qcc"])
        store = RunStore(run)

        def decided():
            if not store.has_part("review_decisions", "image-whprefect-b0"):
                return None
            d = store.read_part("review_decisions", "image-whprefect-b0").to_pylist()[0]
            return d if d["n"] == info["sampled"] else None

        d = poll(decided, 180, "a sync-reviews flow run stored the lot's decision\n" + prefect_stack.worker_log_tail())
        assert d["decision"] == "accepted" and d["mode"] == "label_studio"

        def finished_runs():
            # The decision part is written inside the flow run, before it finishes: wait for its final state.
            runs = prefect_stack.http.post("/flow_runs/filter", json={"deployments": {
                "name": {"any_": ["default"]}}, "flows": {"name": {"any_": ["sync-reviews"]}}}).json()
            mine = [r for r in runs if r["parameters"].get("run_dir") == str(run.resolve())]
            done = mine and all(r["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") for r in mine)
            return mine if done else None

        mine = poll(finished_runs, 120, "the sync-reviews flow runs finished\n" + prefect_stack.worker_log_tail())
        assert len(mine) < len(tasks) and all(r["state_type"] == "COMPLETED" for r in mine), \
            [(r["name"], r["state_type"]) for r in mine]
        assert all("token" not in k for r in mine for k in r["parameters"]) and SECRET not in json.dumps(mine)
        health = httpx.get(url + "/health").json()["runs"][run_id_of(run)]
        assert health["errors"] == 0, health
        print(f"\n[webhook/prefect] tasks={len(tasks)} flow_runs={len(mine)} events={health['events']} "
              f"test={time.monotonic() - t0:.1f}s")
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        for i in hook_ids:
            ls.webhooks.delete(id=i)
        proc.terminate()
        proc.wait(20)
        log.close()
    assert SECRET not in (tmp_path / "webhook.log").read_text()


def _up(url: str) -> bool:
    try:
        httpx.get(url + "/health", timeout=1)
        return True
    except httpx.TransportError:
        return False
