"""`acd review sync`, the sync-reviews flow and the webhook take one path (acd.review_sync.sync_and_reexport)
with one result: three builds of one recipe, annotated alike in the real Label Studio (one lot compliant, one
not, with review.on_reject=regenerate), each synced a different way with no out dir given. Each regenerates
the rejected lot, pushes it again, and re-exports into the out dir its build wrote; the three datasets are
byte-identical and the decisions equal."""
from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest
from dataset_files import manifest_files  # tests/ is on sys.path (conftest)

import labelstudio_server as lss
from acd import review_webhook as wh
from acd.runstore import RunStore

pytestmark = [pytest.mark.labelstudio, pytest.mark.prefect_server, pytest.mark.slow, pytest.mark.timeout(600)]

DECISION_KEYS = ("lot_id", "decision", "mode", "pending", "n", "compliant", "human_decision")


def _verdict(complies: bool, worse: str) -> list[dict]:
    return [{"from_name": "chosen_complies", "to_name": "chosen", "type": "choices",
             "value": {"choices": ["Complies" if complies else "Does not comply"]}},
            {"from_name": "rejected_worse", "to_name": "rejected", "type": "choices", "value": {"choices": [worse]}}]


def _user(ls, email: str) -> int:
    for u in ls.users.list():
        if u.email == email:
            return u.id
    return ls.users.create(email=email, username=email.split("@")[0]).id


def test_cli_flow_and_webhook_syncs_take_one_path_with_one_result(ls_server, prefect_stack, tiny_overrides, tmp_path,
                                                                 monkeypatch):
    from acd.pipeline import run_build

    monkeypatch.setenv("ACD_WORKERS", "1")
    tag = uuid.uuid4().hex[:8]
    review = ls_server.review_cfg(project_prefix=f"PATHS {tag}", on_reject="regenerate", max_regenerations=1)["review"]
    overrides = {**tiny_overrides, "pairs": {"image": 60, "video": 0, "audio": 0}, "review": review}
    ways = ("cli", "flow", "webhook")
    runs = {w: ls_server.document_root / f"paths-{w}-{tag}" for w in ways}
    outs = {w: tmp_path / f"out-{w}" for w in ways}
    for w in ways:
        run_build("demo", outs[w], run_dir=runs[w], overrides=overrides)
    before = manifest_files(outs["cli"])

    # The same verdicts on each run: the biggest lot complies, the second biggest does not.
    ls = ls_server.client()
    who = _user(ls, "paths@acd.local")
    store = RunStore(runs["cli"])
    by_size = sorted(store.lots("review_tasks"), key=lambda lot: (-store.read_part("review_input", lot).num_rows, lot))
    good, bad = by_size[:2]
    originals = {r["pair_id"]: r["chosen"] for r in store.read_part("generate", bad).to_pylist()}
    for w in ways:
        st = RunStore(runs[w])
        assert sorted(st.lots("review_tasks")) == sorted(store.lots("review_tasks"))
        pairs = {r["pair_id"]: r for lot in (good, bad) for r in st.read_part("review_input", lot).to_pylist()}
        for lot in (good, bad):
            for t in st.read_part("review_tasks", lot).to_pylist():
                if t["gold"]:  # a planted wrong caption: caught
                    ls.annotations.create(id=t["task_id"], completed_by=who, result=_verdict(False, "Rejected is not worse"))
                else:
                    worse = "Identical (q-c-c)" if pairs[t["pair_id"]]["is_qcc"] else "Rejected is worse"
                    ls.annotations.create(id=t["task_id"], completed_by=who, result=_verdict(lot == good, worse))

    env = {**prefect_stack.env, lss.TOKEN_ENV: ls_server.token, "ACD_WORKERS": "1"}

    def cli_sync():
        return subprocess.run([sys.executable, "-m", "acd.cli", "review", "sync", "--run-dir", str(runs["cli"])],
                              env=env, cwd=lss.ROOT, capture_output=True, text=True, timeout=300)

    # While a build holds the run (here: this process), a sync stores decisions and leaves regeneration and
    # the export to that build.
    from acd import runlock

    runlock.acquire(runs["cli"], driver="test")
    try:
        held = cli_sync()
    finally:
        runlock.release(runs["cli"])
    assert held.returncode == 0, held.stderr[-3000:]
    assert "not re-exported: decisions stored" in held.stdout and f"pid {__import__('os').getpid()}" in held.stdout
    assert "regenerated 1" not in held.stdout and manifest_files(outs["cli"]) == before
    assert not (runs["cli"] / "superseded").exists()
    cli = cli_sync()
    assert cli.returncode == 0, cli.stderr[-3000:]
    assert f"regenerated 1 rejected lot(s): {bad}" in cli.stdout
    assert f"re-exported {outs['cli'].resolve()}" in cli.stdout, cli.stdout
    flow = subprocess.run([sys.executable, "flows/sync_reviews.py", "--run", str(runs["flow"])],
                          env=env, cwd=lss.ROOT, capture_output=True, text=True, timeout=300)
    assert flow.returncode == 0, (flow.stdout + flow.stderr)[-3000:]
    hook = wh.sync_in_process(wh.single_run(runs["webhook"]))

    decisions = {w: [{k: d.get(k) for k in DECISION_KEYS} for d in
                     RunStore(runs[w]).sql("select * from {review_decisions} order by lot_id").to_pylist()]
                 for w in ways}
    assert decisions["cli"] == decisions["flow"] == decisions["webhook"]
    assert [{k: d.get(k) for k in DECISION_KEYS} for d in hook] == decisions["webhook"]
    flow_said = [json.loads(line) for line in flow.stdout.splitlines() if line.startswith("{")]
    assert [{k: d.get(k) for k in DECISION_KEYS} for d in flow_said] == decisions["flow"]
    got = {d["lot_id"]: d for d in decisions["cli"]}
    assert got[good]["decision"] == "accepted" and got[good]["mode"] == "label_studio"
    # The rejected lot was generated again (new wording), reviewed and pushed again: its new sample is pending.
    assert got[bad]["pending"] and got[bad]["human_decision"] is None

    for w in ways:
        assert (runs[w] / "superseded" / bad / "round-0" / "generate").is_dir(), w
        again = {r["pair_id"]: r["chosen"] for r in RunStore(runs[w]).read_part("generate", bad).to_pylist()}
        assert again.keys() == originals.keys() and any(again[p] != originals[p] for p in again), w
        tasks = RunStore(runs[w]).read_part("review_input", bad).to_pylist()
        assert {t["chosen"] for t in tasks} <= set(again.values()), w

    # Re-exported where each build wrote its dataset, and the three datasets are the same bytes.
    after = {w: manifest_files(outs[w]) for w in ways}
    assert after["cli"] != before
    assert sorted(after["cli"]) == sorted(after["flow"]) == sorted(after["webhook"])
    differ = [p for p in after["cli"] if not after["cli"][p] == after["flow"][p] == after["webhook"][p]]
    assert not differ, differ[:10]
    import pyarrow.parquet as pq

    exported = pq.read_table(str(outs["cli"] / "pairs")).to_pylist()
    old_bad = {(p, c) for p, c in originals.items()}
    assert not {(r["pair_id"], r["chosen"]) for r in exported} & old_bad  # the rejected captions left the dataset
