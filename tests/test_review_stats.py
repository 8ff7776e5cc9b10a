"""Review statistics, sampling and the lot gate, without a server."""
import math

import pyarrow as pa
import pytest

from acd.records import PAIR_SCHEMA, rows_to_table
from acd.review import plant_gold, review_lot, review_settings, sample_lot, sample_size, wilson
from acd.review.gate import human_review, verdict_ok
from acd.review.labelstudio import guideline_html, parse_result
from acd.review.stats import cohen_kappa, decide, percent_agreement

CFG = {"review": {"compliance_bar": 0.95, "confidence": 0.95, "margin": 0.03, "label_studio": None}}


def make_pairs(n, lot="image-instance-b0", passed=None, qcc_every=5, failures=None):
    rows = []
    for i in range(n):
        rows.append(dict(
            pair_id=f"p{i:04d}", lot_id=lot, modality="image", media_key=f"m{i % 7}", instruction_type="instance",
            control="content", length_key="none", is_qcc=(i % qcc_every == 0), rejection_strategy="hallucination",
            split="train", seed=1, instruction=f"Describe the thing {i}.", chosen=f"chosen {i}",
            rejected=f"chosen {i}" if i % qcc_every == 0 else f"rejected {i}",
            check_passed=True if passed is None else passed(i), judge_score=0.9,
            check_failures=[] if failures is None else failures(i),
        ))
    return rows_to_table(rows, PAIR_SCHEMA)


def test_sample_size_matches_formula_and_fpc():
    assert sample_size(10**9) == 203  # z²p(1-p)/m² = 1.96²·0.95·0.05/0.03² = 202.7
    assert sample_size(128) == math.ceil(202.75 / (1 + 201.75 / 128))  # finite-population correction: 79
    assert sample_size(128) == 79
    assert sample_size(10) == 10 and sample_size(1) == 1 and sample_size(0) == 0
    assert sample_size(10**9, margin=0.01) > 1800


def test_wilson_known_values_and_fpc():
    lo, hi = wilson(46, 50)
    assert lo == pytest.approx(0.8112, abs=1e-3) and hi == pytest.approx(0.9685, abs=1e-3)
    assert wilson(0, 0) == (0.0, 1.0)
    assert wilson(40, 40, population=40) == (1.0, 1.0)  # a census has no sampling error
    wide, narrow = wilson(46, 50), wilson(46, 50, population=60)
    assert narrow[1] - narrow[0] < (wide[1] - wide[0]) / 2


def test_decide_accept_reject_needs_more():
    g = dict(bar=0.95, confidence=0.95, margin=0.03)
    assert decide(200, 203, **g)["decision"] == "accepted"  # 98.5%, interval above the bar
    assert decide(160, 200, **g)["decision"] == "rejected"  # 80%
    assert decide(19, 20, **g)["decision"] == "needs_more"  # straddles with too few samples
    assert decide(0, 0, **g)["decision"] == "needs_more"
    # designed precision reached (census): decided on the point estimate
    assert decide(49, 50, population=50, **g)["decision"] == "accepted"
    assert decide(47, 50, population=50, **g)["decision"] == "rejected"  # 94% is not above 95%
    d = decide(46, 47, population=60, **g)
    assert d["decision"] == "accepted" and d["ci_low"] < d["compliance"] < d["ci_high"]


def test_agreement_and_kappa():
    assert percent_agreement([[True, True], [True, False], [False, False], [True]]) == pytest.approx(2 / 3)
    assert percent_agreement([[True]]) is None
    assert cohen_kappa([True, False, True, False], [True, False, True, False]) == 1.0
    assert cohen_kappa([True, True, False, False], [True, False, True, False]) == pytest.approx(0.0)
    assert cohen_kappa([True, True], [True, True]) == 1.0


def test_sampling_is_deterministic_and_order_free():
    pairs = make_pairs(300)
    a = sample_lot(pairs, CFG, seed=7)
    b = sample_lot(pairs.take(list(reversed(range(300)))), CFG, seed=7)
    assert a == b and len(a) == sample_size(300) == len(set(a))
    assert sample_lot(pairs, CFG, seed=8) != a
    assert len(sample_lot(make_pairs(30), CFG, seed=7)) == sample_size(30) == 27  # FPC: most of a small lot
    assert len(sample_lot(make_pairs(5), CFG, seed=7)) == 5


def test_gold_pairs_are_known_bad():
    pairs = make_pairs(40)
    gold = plant_gold(pairs, 4, seed=3)
    assert len(gold) == 4 and {g["gold_kind"] for g in gold} == {"swapped", "foreign"}
    src = {r["pair_id"]: r for r in pairs.to_pylist()}
    for g in gold:
        s = src[g["gold_source"]]
        assert g["pair_id"].startswith("gold-") and g["chosen"] != s["chosen"]
        if g["gold_kind"] == "swapped":
            assert (g["chosen"], g["rejected"]) == (s["rejected"], s["chosen"])
        else:
            other = next(r for r in src.values() if r["chosen"] == g["chosen"])
            assert other["media_key"] != s["media_key"]
    assert plant_gold(pairs, 4, seed=3) == gold


def test_auto_gate():
    ok, _ = review_lot(make_pairs(100), CFG, seed=1)
    assert set(ok.column("review_status").to_pylist()) == {"auto"}
    t, d = review_lot(make_pairs(100, passed=lambda i: i % 10 != 0), CFG, seed=1)  # 90% pass
    assert d["decision"] == "rejected" and d["compliance"] == pytest.approx(0.9) and d["mode"] == "auto"
    assert set(t.column("review_decision").to_pylist()) == {"rejected"} and t.schema == PAIR_SCHEMA
    _, d = review_lot(make_pairs(100), CFG, seed=1)
    assert d["decision"] == "accepted" and d["ci_low"] < 1.0 and "pending human" in d["note"]
    _, d = review_lot(make_pairs(100), {"review": {"on_reject": "regenerate"}}, seed=1)
    assert d["action"] == "keep"
    _, d = review_lot(make_pairs(100, passed=lambda i: i % 5 != 0), {"review": {"on_reject": "regenerate"}}, seed=1)
    assert (d["decision"], d["action"]) == ("rejected", "regenerate")
    with pytest.raises(ValueError):
        review_settings({"review": {"on_reject": "ignore"}})


def test_auto_gate_counts_near_duplicates_as_dedup_not_noncompliance():
    dup = lambda i: i % 10 == 0  # 10% near-duplicates, 2% of the rest fail a real check
    bad = lambda i: i % 50 == 1
    pairs = make_pairs(100, passed=lambda i: not (dup(i) or bad(i)),
                       failures=lambda i: ["near_duplicate"] if dup(i) else ["length_violated"] if bad(i) else [])
    _, d = review_lot(pairs, CFG, seed=1)
    assert (d["decision"], d["n"], d["population"], d["compliant"]) == ("accepted", 90, 100, 88)
    assert "10 near-duplicate pairs dropped" in d["note"]
    # A pair that is a near-duplicate *and* fails another check still counts as non-compliant.
    both = make_pairs(100, passed=lambda i: not dup(i), failures=lambda i: ["length_violated", "near_duplicate"] if dup(i) else [])
    _, d = review_lot(both, CFG, seed=1)
    assert (d["decision"], d["n"]) == ("rejected", 100)
    # A degenerate generator: most captions are copies of another item's.
    degenerate = make_pairs(100, passed=lambda i: i % 3 == 0, failures=lambda i: [] if i % 3 == 0 else ["near_duplicate"])
    _, d = review_lot(degenerate, CFG, seed=1)
    assert d["decision"] == "rejected" and d["compliance"] == 1.0 and "max_duplicate_share" in d["note"]


def ann(aid, pid, who, ok=True, worse="yes", correction=None):
    return dict(annotation_id=aid, pair_id=pid, annotator=who, chosen_complies=ok, rejected_worse=worse,
                chosen_hallucinates=False, correction=correction, was_cancelled=False, updated_at=f"t{aid:05d}")


def test_human_gate_corrections_gold_and_agreement():
    pairs = make_pairs(20, qcc_every=1000)
    tasks = [{"pair_id": f"p{i:04d}", "gold": False} for i in range(20)] + [{"pair_id": "gold-x", "gold": True}]
    anns = [ann(i, f"p{i:04d}", "a@x", ok=i != 3, correction="fixed caption" if i == 3 else None) for i in range(20)]
    anns += [ann(100, "p0000", "b@x"), ann(101, "p0001", "b@x", ok=False)]  # two annotators on two items
    anns += [ann(200, "gold-x", "a@x", ok=False), ann(201, "gold-x", "b@x", ok=True)]
    out, d = human_review(pairs, tasks, anns, CFG)
    rows = {r["pair_id"]: r for r in out.to_pylist()}
    assert rows["p0003"]["chosen"] == "fixed caption" and rows["p0003"]["original_chosen"] == "chosen 3"
    assert rows["p0003"]["reviewer"] == "a@x" and rows["p0000"]["reviewer"] == "a@x,b@x"
    assert d["n"] == 20 and d["compliant"] == 18  # p0003 no; p0001 tie 1:1 is not compliant
    assert d["gold_items"] == 1 and d["gold_accuracy"] == 0.5
    assert d["multi_rated"] == 3 and d["agreement"] == pytest.approx(1 / 3) and d["corrected"] == 1
    assert set(out.column("review_status").to_pylist()) == {"reviewed"}


def test_verdicts_and_parse():
    assert verdict_ok({"chosen_complies": True, "rejected_worse": "identical"}, is_qcc=True)
    assert not verdict_ok({"chosen_complies": True, "rejected_worse": "identical"}, is_qcc=False)
    assert not verdict_ok({"chosen_complies": True, "rejected_worse": "yes", "chosen_hallucinates": True}, False)
    r = parse_result([
        {"from_name": "chosen_complies", "value": {"choices": ["Does not comply"]}},
        {"from_name": "rejected_worse", "value": {"choices": ["Identical (q-c-c)"]}},
        {"from_name": "hallucination", "value": {"choices": ["Chosen hallucinates"]}},
        {"from_name": "correction", "value": {"text": ["  A red ball.  "]}},
    ])
    assert r == {"chosen_complies": False, "rejected_worse": "identical", "chosen_hallucinates": True,
                 "rejected_hallucinates": False, "correction": "A red ball.", "skip_reason": None, "invalid": None}
    html = guideline_html()
    assert "<h2>1. Does the chosen caption comply?</h2>" in html and "<strong>Complies</strong>" in html
    from acd.paths import ANNOTATION_DIR

    bullets = sum(line.startswith("- ") for line in (ANNOTATION_DIR / "guideline.md").read_text().splitlines())
    assert html.count("<li>") == bullets > 0 and "<p>- " not in html and "\n- " not in html  # every bullet a list item


def test_review_settings_refuses_unknown_or_misplaced_keys():
    from acd.recipe import load_recipe

    with pytest.raises(ValueError, match="project_prefix"):
        review_settings({"review": {"project_prefix": "x", "label_studio": {"url": "http://h"}}})
    with pytest.raises(ValueError, match="label_studio.webhok_url"):
        review_settings({"review": {"label_studio": {"webhok_url": "http://h"}}})
    with pytest.raises(ValueError, match="label_studio.webhok_url"):
        review_settings({"label_studio": {"webhok_url": "http://h"}})  # a review block itself
    ok = review_settings({"review": {"label_studio": {"project_prefix": "mine"}}})
    assert ok.label_studio.project_prefix == "mine" and ok.max_regenerations == 1
    with pytest.raises(ValueError, match="compliance_bsr"):
        load_recipe("demo", {"review": {"compliance_bsr": 0.9}})


def test_review_settings_takes_a_recipe_a_review_none_or_a_mapping():
    from acd.recipe import load_recipe
    from acd.recipe_model import LabelStudio, Review
    from acd.review.config import recipe_seed

    recipe = load_recipe("demo", {"review": {"compliance_bar": 0.9}})
    assert review_settings(recipe) is recipe.review and recipe_seed(recipe) == recipe.seed
    assert review_settings(recipe.review) is recipe.review and recipe_seed(recipe.review) is None
    assert review_settings(None) == Review() == review_settings({}) == review_settings({"review": None})
    assert review_settings({"compliance_bar": 0.9}).compliance_bar == 0.9
    whole = recipe.effective()  # <run>/recipe.json as a build now writes it, every field
    assert review_settings(whole) == recipe.review and recipe_seed(whole) == recipe.seed
    assert review_settings({"review": {"margin": 0.05}, "seed": 3}).margin == 0.05
    # The model's defaults are the ones review's code had (acd.review.config DEFAULTS / LS_DEFAULTS before).
    assert Review().model_dump() == dict(
        compliance_bar=0.95, confidence=0.95, margin=0.03, label_studio=None, wait=False, on_reject="drop",
        max_regenerations=1, max_duplicate_share=0.5, gold_share=0.05, min_gold=1, overlap=0.0,
        followup_share=0.25, followup_min=10, seconds_per_task=45.0)
    assert LabelStudio().model_dump() == dict(
        url="http://127.0.0.1:8080", token_env="LABEL_STUDIO_API_KEY", token_secret=None, document_root=None,
        project_prefix="ACD review", webhook_url=None, retries=5, backoff_s=1.0)


def test_resolve_token_reads_the_env_var_named_in_the_model(monkeypatch):
    from acd.recipe_model import LabelStudio
    from acd.review.config import resolve_token

    monkeypatch.setenv("ACD_TEST_LS_TOKEN", "s3cret")
    assert resolve_token(LabelStudio(token_env="ACD_TEST_LS_TOKEN")) == "s3cret"
    monkeypatch.delenv("ACD_TEST_LS_TOKEN")
    with pytest.raises(RuntimeError, match=r"\$ACD_TEST_LS_TOKEN") as err:
        resolve_token({"token_env": "ACD_TEST_LS_TOKEN"})
    assert "s3cret" not in str(err.value)


def _run_with_recipe(tmp_path, recipe_json: dict):
    import json

    run = tmp_path / "run"
    run.mkdir()
    (run / "recipe.json").write_text(json.dumps(recipe_json))
    return run


@pytest.mark.parametrize("form", ["written", "effective"])
def test_webhook_and_registry_read_a_runs_recipe_json_in_either_form(tmp_path, form):
    """<run>/recipe.json holds the effective recipe; run dirs made before hold the recipe as written."""
    import json

    from acd.recipe import load_recipe
    import acd.review_webhook as wh
    from acd.review import registry

    ls = {"url": "http://ls.example:8080", "token_env": "ACD_UNSET_TOKEN", "webhook_url": "http://h/label-studio"}
    recipe = load_recipe("demo", {"review": {"label_studio": ls, "on_reject": "regenerate"}})
    run = _run_with_recipe(tmp_path, recipe.written if form == "written" else recipe.effective())
    state = tmp_path / "state"
    t = wh.single_run(run, state=state)
    assert t.review == recipe.review and t.review.label_studio.url == "http://ls.example:8080"
    assert t.recipe == str(run.resolve() / "recipe.json")
    path = registry.register_run(run, recipe.review, 7, state=state)
    entry = json.loads(path.read_text())
    assert entry["review"] == recipe.review.model_dump(mode="json") and entry["projects"] == [7]
    assert "token" not in entry["review"]["label_studio"]
    assert wh.Target.from_entry(entry).review == recipe.review
    (run / "recipe.json").unlink()  # the registry entry alone
    assert wh.single_run(run, state=state).review == recipe.review
    assert wh.Target("r", run, {}).review.label_studio is None


def test_sync_reviews_flow_points_the_review_block_at_another_server(tmp_path):
    import flows.sync_reviews as flow
    from acd.recipe import load_recipe

    recipe = load_recipe("demo", {"review": {"compliance_bar": 0.9}})
    run = _run_with_recipe(tmp_path, recipe.written)
    assert flow._review_block(str(run), None, None, None) is None  # the run's own
    block = flow._review_block(str(run), None, "http://other:9000", "/srv/media")
    assert block["compliance_bar"] == 0.9 and block["label_studio"]["url"] == "http://other:9000"
    assert block["label_studio"]["document_root"] == "/srv/media" and block["label_studio"]["token_env"] == "LABEL_STUDIO_API_KEY"
    assert review_settings(block).label_studio.url == "http://other:9000"


def choice(name, *values):
    return {"from_name": name, "to_name": "chosen", "type": "choices", "value": {"choices": list(values)}}


def test_parse_result_names_what_makes_an_annotation_invalid():
    ok = [choice("chosen_complies", "Complies"), choice("rejected_worse", "Rejected is worse")]
    assert parse_result(ok)["invalid"] is None and parse_result(ok)["chosen_complies"] is True
    assert parse_result([])["invalid"] == "empty result"
    assert parse_result(None)["invalid"] == "empty result"
    maybe = parse_result([choice("chosen_complies", "Maybe"), ok[1]])
    assert maybe["invalid"] == "unknown choice 'Maybe' in chosen_complies" and maybe["chosen_complies"] is None
    assert parse_result([choice("bogus", "Complies"), *ok])["invalid"] == "unknown field 'bogus'"
    assert parse_result(ok[:1])["invalid"] == "no rejected_worse verdict"
    assert parse_result([choice("chosen_complies", "Complies", "Does not comply"), ok[1]])["invalid"].startswith("2 choices")
    skip = parse_result([{"from_name": "skip_reason", "value": {"text": [" video does not load "]}}])
    assert skip["skip_reason"] == "video does not load"


def test_human_gate_excludes_invalid_skipped_and_deleted_annotations():
    pairs = make_pairs(10, qcc_every=1000)
    tasks = [{"pair_id": f"p{i:04d}", "gold": False} for i in range(10)]
    anns = [ann(i, f"p{i:04d}", "a@x") for i in range(5)]
    anns += [dict(ann(10 + i, f"p{i:04d}", "b@x", ok=None), invalid="unknown choice 'Maybe' in chosen_complies") for i in range(5, 8)]
    anns += [dict(ann(20, "p0008", "b@x", ok=None), was_cancelled=True, skip_reason="media does not load")]
    anns += [dict(ann(30, "p0009", "b@x", ok=False), deleted=True)]
    out, d = human_review(pairs, tasks, anns, CFG)
    assert (d["n"], d["compliant"], d["invalid"], d["skipped"], d["deleted"]) == (5, 5, 3, 1, 1)
    kinds = sorted((i["kind"], i["pair_id"]) for i in d["issues"])
    assert kinds == [("deleted", "p0009"), ("invalid", "p0005"), ("invalid", "p0006"), ("invalid", "p0007"), ("skipped", "p0008")]
    assert next(i for i in d["issues"] if i["kind"] == "skipped")["reason"] == "media does not load"
    assert set(out.column("check_passed").to_pylist()) == {True}  # nothing dropped on an invalid verdict


def test_human_gate_rechecks_corrections_and_drops_uncorrected_noncompliant_pairs():
    rows = make_pairs(6, qcc_every=3).to_pylist()  # p0000 and p0003 are q-c-c
    rows[1].update(length_key="word_exact:10", instruction="Describe the thing 1. Use exactly 10 words.")
    pairs = rows_to_table(rows, PAIR_SCHEMA)
    tasks = [{"pair_id": r["pair_id"], "gold": False} for r in rows]
    anns = [ann(1, "p0000", "a@x", ok=False, worse="identical", correction="A red ball rolls left."),  # q-c-c fix
            ann(2, "p0001", "a@x", ok=False, correction="A small red ball rolls slowly past the big wooden box."),
            ann(3, "p0002", "a@x", ok=False),  # no correction: leaves the dataset
            ann(4, "p0004", "a@x", ok=False, correction="rejected 4"),  # would equal the rejected caption
            ann(5, "p0005", "a@x", ok=True)]
    out, d = human_review(pairs, tasks, anns, CFG)
    r = {x["pair_id"]: x for x in out.to_pylist()}
    assert r["p0000"]["chosen"] == r["p0000"]["rejected"] == "A red ball rolls left." and r["p0000"]["check_passed"]
    assert r["p0001"]["chosen"] == rows[1]["chosen"] and not r["p0001"]["check_passed"]  # 11 words refused, dropped
    assert not r["p0002"]["check_passed"] and r["p0002"]["check_failures"] == ["review_not_compliant"]
    assert r["p0004"]["chosen"] == "chosen 4" and not r["p0004"]["check_passed"]
    assert r["p0005"]["check_passed"] and r["p0003"]["check_passed"]  # p0003 not reviewed: untouched
    refused = {i["pair_id"]: i["reason"] for i in d["issues"] if i["kind"] == "correction_refused"}
    assert refused == {"p0001": "length_chosen", "p0004": "chosen_equals_rejected"}
    assert (d["corrected"], d["refused_corrections"], d["dropped"]) == (1, 2, 3)


def test_pending_lots_keep_the_automatic_decision():
    pairs = make_pairs(100, qcc_every=1000)
    _, auto = review_lot(pairs, CFG, seed=1)
    tasks = [{"pair_id": p, "gold": False} for p in sample_lot(pairs, CFG, seed=1)]
    out, d = human_review(pairs, tasks, [], CFG, auto=auto)
    assert (d["decision"], d["pending"], d["human_decision"], d["mode"]) == ("accepted", True, None, "auto")
    assert set(out.column("review_decision").to_pylist()) == {"accepted"}
    anns = [ann(i, t["pair_id"], "a@x", ok=i % 10 != 0) for i, t in enumerate(tasks[:20])]  # 18/20: straddles
    _, d = human_review(pairs, tasks, anns, CFG, auto=auto)
    assert (d["decision"], d["pending"], d["human_decision"], d["mode"], d["n"]) == ("accepted", True, "needs_more", "label_studio", 20)
    anns = [ann(i, t["pair_id"], "a@x", ok=i % 4 != 0) for i, t in enumerate(tasks)]  # 75%: rejected
    _, d = human_review(pairs, tasks, anns, CFG, auto=auto)
    assert (d["decision"], d["pending"], d["human_decision"], d["action"]) == ("rejected", False, "rejected", "drop")


def test_fully_pushed_and_answered_lot_is_decided_on_exact_compliance():
    pairs = make_pairs(20, qcc_every=1000)
    tasks = [{"pair_id": f"p{i:04d}", "gold": False} for i in range(20)]
    anns = [ann(i, f"p{i:04d}", "a@x", ok=i != 0) for i in range(19)]
    anns.append(dict(ann(19, "p0019", "a@x", ok=None), was_cancelled=True))  # skipped: nothing more to sample
    _, d = human_review(pairs, tasks, anns, CFG)
    assert (d["n"], d["compliant"], d["decision"], d["pending"]) == (19, 18, "rejected", False)  # 94.7% < 95%


def test_sequential_sample_sizes_extend_the_first_sample():
    from acd.review.sampling import next_sample_size, sample_order

    pairs = make_pairs(128)
    first = sample_lot(pairs, CFG, seed=4)
    assert sample_order(pairs, seed=4)[:len(first)] == first and len(first) == 79
    assert next_sample_size(79, 128, CFG) == 99 and next_sample_size(20, 128, CFG) == 30
    assert next_sample_size(120, 128, CFG) == 128


def test_presented_numbers_are_rounded_and_name_pending_lots():
    from acd.review import present

    row = present.lot_row(dict(lot_id="l", mode="label_studio", decision="accepted", pending=True, human_decision="needs_more",
                               n=38, sampled=41, compliance=38 / 41, ci_low=0.88512345, ci_high=0.9541234,
                               gold_accuracy=0.75, agreement=10 / 12, kappa=0.4123, reviewers=2))
    assert row["compliance"] == "0.927" and row["95% CI"] == "[0.885, 0.954]" and row["kappa"] == "0.412"
    assert row["decision"] == "accepted (auto; human: needs_more)" and row["reviewed"] == "38/41"
    assert present.lot_row(dict(mode="auto", decision="accepted", pending=True, n=16))["decision"] == "accepted"


def test_review_workload_at_the_papers_scale():
    """acd-300k's lots (about 150 of 2,048 pairs) at a 95% bar, 95% confidence and a 0.03 margin: about 185 samples
    per lot plus planted gold, so about 28k Label Studio tasks; annotator-hours at review.seconds_per_task."""
    from acd.review.sampling import first_sample_size, workload

    cfg = review_settings({"seconds_per_task": 40})
    per_lot = first_sample_size(2048, cfg)
    assert 175 <= per_lot <= 190
    w = workload([2048] * 146 + [1024, 512], cfg)
    assert w["lots"] == 148 and 26_000 <= w["tasks"] <= 30_000
    assert w["annotator_hours"] == round(w["tasks"] * 40 / 3600, 1)
    # A second annotator on a share of the tasks adds that share; a smaller lot is sampled less (finite population).
    assert workload([2048], review_settings({"overlap": 0.2}))["tasks"] == math.ceil(
        workload([2048], cfg)["tasks"] * 1.2)
    assert workload([50], cfg)["tasks"] < workload([2048], cfg)["tasks"]
    # Bars at the edges (0: every lot passes; above 1: none does) still give a workload, not a division by zero.
    for bar in (0.0, 1.0, 1.5):
        assert workload([1, 12, 2048], review_settings({"compliance_bar": bar}))["tasks"] == 3


def test_acd_estimate_states_the_review_workload_for_any_backend(tmp_path):
    """`acd estimate` on the grounded demo (no model requests) still says what human review would take."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-m", "acd.cli", "estimate", "--recipe", "demo", "--run-dir",
                        str(tmp_path / "run"), "--json"], cwd=root, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(root)), timeout=600)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["requests"] == 0 and s["review"]["lots"] == 27 and s["review"]["tasks"] > 0
    assert s["review"]["seconds_per_task"] == 45.0
