"""AnyCapEval: the official format is read, scored and reported; the offline judge is sane on the reference;
the synthetic split has the reference's shape; base vs base+ACM is compared."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from acd.acm.toydata import make_toy_dataset
from acd.evaluation.anycapeval import evaluate, load_benchmark
from acd.evaluation.synthetic_split import REF_KEYS, from_dataset
from acd.paths import REFERENCE_DIR

BENCH = REFERENCE_DIR / "anycapeval"


def _need_reference():
    if not (BENCH / "image" / "ref_content.jsonl").exists():
        pytest.skip(f"AnyCapEval reference slice not found at {BENCH} (set ACD_REFERENCE to the anycap folder)")


@pytest.fixture(scope="module")
def judge():
    from acd.evaluation.scoring import get_judge

    return get_judge()


def test_reads_reference_format():
    _need_reference()
    items = load_benchmark(BENCH)
    assert {it["modality"] for it in items} == {"image", "video", "audio"}
    content = [it for it in items if it["kind"] == "content" and it["modality"] == "image"]
    assert content and all(it["key_points"] for it in content)
    assert all(it["instruction"] and it["reference"] and it["length_constraint"] for it in items)
    # release names map onto the taxonomy ("multi_class_position" -> position)
    assert {"position", "appearance"} <= {it["instruction_type"] for it in content}


def test_offline_judge_sanity_on_reference(judge):
    """Own key points vs another item's: AUC; reference captions vs their own length constraints: pass rate."""
    _need_reference()
    from acd.evaluation.scoring import keypoint_auc, length_pass_rate

    # AUC on the first 30 rows per file (the machine is shared; `acd eval --sanity` gives the full numbers),
    # length pass rate on everything (no embeddings needed)
    kp = keypoint_auc(judge, load_benchmark(BENCH, limit=30))
    ln = length_pass_rate(load_benchmark(BENCH))
    print(f"\nkey-point AUC (similarity) {kp['auc_similarity']:.3f}, (coverage) {kp['auc_coverage']:.3f} "
          f"on {kp['n_items']} items; coverage own {kp['mean_coverage_own']:.2f} vs other "
          f"{kp['mean_coverage_other']:.2f}; reference length pass rate {ln['pass_rate']:.3f} "
          f"on {ln['n_items']} items {ln['per_form']}")
    assert kp["n_items"] >= 40
    assert kp["auc_similarity"] > 0.9 and kp["auc_coverage"] > 0.9
    assert kp["mean_coverage_own"] > kp["mean_coverage_other"] + 0.5
    assert 0.7 < ln["pass_rate"] < 1.0  # model-written references miss some constraints; the validator sees it


def test_eval_reference_scores_and_reports(tmp_path, judge):
    _need_reference()
    res = evaluate(BENCH, tmp_path, captioner="reference", modalities=("image", "audio"), limit=6)
    report = json.loads((tmp_path / "report.json").read_text())
    md = (tmp_path / "report.md").read_text()
    assert "| reference | image | ALL |" in md
    rows = {(r["modality"], r["instruction_type"]): r for r in report["summary"]}
    assert rows[("image", "ALL")]["coverage"] > 0.6  # the reference covers its own key points
    assert rows[("image", "ALL")]["style"] >= 2.5  # rubric: identical to the reference -> 2 semantic points
    results = [json.loads(l) for l in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(results) == res["meta"]["items"] == 24
    # a wrong caption scores lower on content than the reference does
    from acd.evaluation.scoring import content_score

    it = next(i for i in load_benchmark(BENCH, ("image",), limit=6) if i["key_points"])
    good = content_score(judge, it["reference"], it["key_points"])
    bad = content_score(judge, "A bowl of soup on a wooden table.", it["key_points"])
    assert good["coverage"] > bad["coverage"] and good["matched"] >= 1


def test_synthetic_split_matches_reference_format(tmp_path):
    ds = make_toy_dataset(tmp_path / "ds", n_image=6, n_video=3, n_audio=3)
    out = from_dataset(ds, tmp_path / "bench", split="train")
    for m in ("image", "video", "audio"):
        for fname, extra in (("ref_content.jsonl", ("key_point",)), ("ref_style.jsonl", ())):
            rows = [json.loads(l) for l in (out / m / fname).read_text().splitlines()]
            assert rows, (m, fname)
            for r in rows:
                assert tuple(r) == REF_KEYS[m] + extra
                assert r["conversations"][0]["from"] == "human" and r["conversations"][1]["from"] == "gpt"
                assert len(r["restriction"]) == 2 and (out / m / "media" / r[m]).exists()
                if extra:
                    assert r["key_point"] and all(isinstance(k, str) for k in r["key_point"])
            if (BENCH / m / fname).exists():  # same keys as the official file, where it has them
                ref = json.loads((BENCH / m / fname).read_text().splitlines()[0])
                keys = set(ref) | ({"key_point"} if extra else set())
                assert set(rows[0]) == keys, (m, fname, set(rows[0]) ^ keys)
    items = load_benchmark(out)
    assert all(it["media_path"] and it["grounding"] for it in items)


def test_synthetic_split_in_domain_phrasing(tmp_path):
    """phrasing="dataset": the build's own instruction writer phrases each item's instruction (with its
    length sentence), and the key points follow what that instruction names."""
    from acd.checks.length import parse_constraint
    from acd.evaluation.synthetic_split import build_items

    ds = make_toy_dataset(tmp_path / "ds", n_image=6, n_video=3, n_audio=3)
    eval_items = load_benchmark(from_dataset(ds, tmp_path / "eval", split="train"))
    dom_items = load_benchmark(from_dataset(ds, tmp_path / "dom", split="train", phrasing="dataset"))
    assert len(dom_items) == len(eval_items)
    assert [i["instruction_type"] for i in dom_items] == [i["instruction_type"] for i in eval_items]
    assert sum(a["instruction"] != b["instruction"] for a, b in zip(dom_items, eval_items)) >= 0.8 * len(dom_items)
    for it in dom_items:
        c = parse_constraint(it["instruction"])
        assert c is not None and c.sentence() == it["length_constraint"]  # the length sentence is in q
    named = [it for it in dom_items if it["kind"] == "content" and it["instruction_type"] == "appearance"]
    assert named
    for it in named:  # appearance key points are about the objects the instruction names
        assert any(k.split("'s appearance")[0].split()[-1] in it["instruction"].lower() for k in it["key_points"])
    with pytest.raises(ValueError, match="phrasing"):
        build_items([], phrasing="nope")


def test_base_vs_base_plus_acm_report(tmp_path):
    from acd.acm.train import train

    ds = make_toy_dataset(tmp_path / "ds", n_image=6, n_video=2, n_audio=2)
    cfg = {"base": "tiny", "model": {"lm": {"hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                                            "intermediate_size": 128}, "max_target_tokens": 24},
           "train": {"batch_size": 4, "log_every": 2, "precision": "fp32"}}
    from acd.acm.model import load_config

    s = train(ds, load_config(cfg), tmp_path / "acm", steps=6)
    assert Path(s["run_dir"]).is_absolute() and Path(s["checkpoint"]).is_absolute()
    bench = from_dataset(ds, tmp_path / "bench", split="train")
    res = evaluate(bench, tmp_path / "eval", captioner="reference", acm=s["run_dir"])
    # The report says whether the ACM changed anything, in words (not only as a table of zero deltas).
    effect = res["acm_effect"]
    assert effect["items"] == res["meta"]["items"] and 0 <= effect["captions_changed"] <= effect["items"]
    assert effect["verdict"] in (tmp_path / "eval" / "report.md").read_text()
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert {r["system"] for r in report["summary"]} == {"reference", "reference+acm"}
    comp = {(c["modality"], c["instruction_type"]): c for c in report["comparison"]}
    assert {("image", "ALL"), ("video", "ALL"), ("audio", "ALL"), ("ALL", "ALL")} <= set(comp)
    assert "delta_coverage" in comp[("image", "ALL")]
    assert "reference+acm vs reference" in (tmp_path / "eval" / "report.md").read_text()


def test_backend_captioner_roles_on_the_synthetic_split(tmp_path):
    """`grounded:rejected` (make eval's default base) writes a weaker caption for every item: the rejected
    role needs the chosen caption first, which the captioner now asks for. A captioner that fails on every
    item is an error, not a table of zeros."""
    from acd.evaluation.anycapeval import caption_backend

    ds = make_toy_dataset(tmp_path / "ds", n_image=6, n_video=3, n_audio=3)
    items = load_benchmark(from_dataset(ds, tmp_path / "bench", split="train"))
    chosen = caption_backend(items, "grounded")
    rejected = caption_backend(items, "grounded:rejected")
    assert all(c["caption"] and not c["error"] for c in chosen + rejected)
    assert sum(a["caption"] != b["caption"] for a, b in zip(chosen, rejected)) >= 0.8 * len(items)
    assert caption_backend(items, "grounded:rejected") == rejected  # deterministic
    # a third field picks the rejection strategy: a captioner that ignores the length control breaks it on
    # every item that has one, where the default (weak_model) keeps it
    from acd.checks.length import parse_constraint, satisfies

    too_long = caption_backend(items, "grounded:rejected:length_violation")
    with_len = [i for i, it in enumerate(items) if parse_constraint(it.get("length_constraint") or it["instruction"])]
    assert with_len
    ok = lambda caps: sum(satisfies(caps[i]["caption"], parse_constraint(items[i].get("length_constraint")
                                                                         or items[i]["instruction"])) for i in with_len)
    assert ok(too_long) == 0 and ok(rejected) >= 0.8 * len(with_len)
    with pytest.raises(RuntimeError, match="failed on all"):
        evaluate(tmp_path / "bench", tmp_path / "eval", captioner="grounded:rejected:nosuchstrategy")
    with pytest.raises(RuntimeError, match="failed on all"):
        evaluate(tmp_path / "bench", tmp_path / "eval", captioner="grounded:nosuchrole")


def test_acm_effect_says_when_acm_changed_nothing():
    from acd.evaluation.report import acm_effect

    base = [{"caption": "a red cube."}, {"caption": "a dog barks."}]
    rows = [{"coverage": 0.5, "kpd": 10.0, "style": None, "length_ok": True}] * 2
    same = acm_effect(base, [dict(b) for b in base], rows, [dict(r) for r in rows])
    assert same["captions_changed"] == 0 and same["verdict"].startswith("ACM changed nothing") and "2/2" in same["verdict"]
    other = acm_effect(base, [{"caption": "a red cube on the left."}, base[1]], rows,
                       [{**rows[0], "coverage": 1.0}, rows[1]])
    assert (other["captions_changed"], other["scores_moved"]) == (1, 1)
    assert other["verdict"] == "ACM rewrote 1/2 captions; scores moved on 1/2 items"
