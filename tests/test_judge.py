"""The offline judge (packaged MiniLM) and checks calibrated on the real AnyCap release slice.

Reference data is read from ../shared/reference/anycap at test time (never copied into the repo); the
tests that need it skip with a message when it is absent. The model loads once per session (fixture).
"""
from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path

import numpy as np
import pytest

from acd.checks import JUDGE_PREFERS_REJECTED, check_lot
from acd.checks.judge import OfflineJudge, caption_units, clean_keypoint, load_model, strip_length_sentence
from acd.checks.length import count_words, parse_constraint, satisfies
from acd.checks.rules import check_pair
from acd.paths import REFERENCE_DIR
from acd.records import PAIR_SCHEMA, rows_to_table

NEEDS_REF = pytest.mark.skipif(
    not (REFERENCE_DIR / "anycapeval").is_dir(),
    reason=f"AnyCap reference slice not found at {REFERENCE_DIR} (set ACD_REFERENCE to its folder)",
)
# The aligner prompt of the release's training files: requirement q and existing caption a.
_ALIGNER = re.compile(
    r"The requirement is:\s*'?(?P<q>.*?)'?\.?\s*\.?\s*The existing caption is:\s*'?(?P<a>.*?)'?\.*\s*(?:You only need.*)?$",
    re.S,
)


@pytest.fixture(scope="session")
def judge() -> OfflineJudge:
    t = time.perf_counter()
    load_model()
    print(f"\nMiniLM load: {time.perf_counter() - t:.1f} s")
    return OfflineJudge()


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def keypoint_items() -> list[dict]:
    items = []
    for modality in ("image", "video", "audio"):
        p = REFERENCE_DIR / "anycapeval" / modality / "ref_content.jsonl"
        for d in _jsonl(p) if p.exists() else []:
            if d.get("key_point"):
                items.append(dict(modality=modality, type=d["restriction"][0], caption=d["conversations"][1]["value"],
                                  instruction=d["conversations"][0]["value"], key_points=d["key_point"]))
    return items


def training_pairs() -> list[dict]:
    """Release q-a-c / q-8b-c / q-c-c rows as (kind, q, c, a)."""
    out = []
    for p in sorted((REFERENCE_DIR / "acd").rglob("*.jsonl")):
        s = str(p)
        kind = "qcc" if "q-c-c" in s else "q8bc" if "q-8b-c" in s else "qac" if ("q-a-c" in s or "q_c_a" in s) else None
        if kind is None:
            continue
        for d in _jsonl(p):
            m = _ALIGNER.search(d["conversations"][0]["value"])
            if m:
                q = re.sub(r"^\s*<\w+>\s*", "", m["q"])
                out.append(dict(kind=kind, file=p.name, q=q, c=d["conversations"][1]["value"], a=m["a"]))
    return out


# ---------------------------------------------------------------------------------------------------- unit
def test_clean_keypoint_and_units():
    assert clean_keypoint("mention the soap dispenser's position (between the two sinks)") == \
        "the soap dispenser's position between the two sinks"
    units = caption_units("A man talks; a saw cuts wood steadily. Birds sing outside, while rain falls on the roof.")
    assert "A man talks; a saw cuts wood steadily." in units and "a saw cuts wood steadily." in units
    q = "Describe the dog. The generated caption's length needs to be 10 to 20 words."
    assert strip_length_sentence(q) == "Describe the dog."


def test_score_keypoints_and_compliance(judge):
    caption = ("A brown dog leaps to catch a red frisbee in a sunny park. "
               "Behind it, two children sit on a wooden bench eating ice cream.")
    own = ["mention the brown dog catching a frisbee", "describe the children on the bench"]
    other = ["mention the snow-covered mountain peak", "describe the sailboat on the lake"]
    s_own, s_other = judge.score_keypoints(caption, own), judge.score_keypoints(caption, other)
    assert s_own["matched"] == 2 and s_own["coverage"] == 1.0 and s_other["matched"] == 0
    assert s_own["kpd"] == pytest.approx(100 * 2 / count_words(caption))
    q = "Describe the dog in the park. The generated caption's length needs to be 10 to 20 words."
    good = "A brown dog leaps to catch a red frisbee in a sunny park on a warm day."
    too_long = " ".join([good] * 3)
    off_topic = "Waves crash against a lighthouse while gulls circle in a grey stormy sky at dusk."
    cg, cl, co = (judge.compliance(q, x) for x in (good, too_long, off_topic))
    assert 0.0 <= min(cg, cl, co) and max(cg, cl, co) <= 1.0
    assert cg > cl and cg > co
    assert judge.prefers(q, good, too_long) and judge.prefers(q, good, off_topic)
    assert not judge.prefers(q, off_topic, good)
    assert judge.prefers(q, good, good)  # q-c-c: a tie is not a failure
    # length given explicitly (key or sentence) equals length read from the instruction
    assert judge.compliance(q, too_long, "word_range:10:20") == pytest.approx(cl)
    assert judge.compliance(q, too_long, "The generated caption's length needs to be 10 to 20 words.") == pytest.approx(cl)


def test_check_lot_with_offline_judge(judge):
    q = "Describe the dog in the park. The generated caption's length needs to be 10 to 20 words."
    good = "A brown dog leaps to catch a red frisbee in a sunny park on a warm day."
    off = "Waves crash against a lighthouse while gulls circle in a grey stormy sky at dusk."
    rows = []
    for i, (c, a, qcc) in enumerate([(good, off, False), (off, good, False), (good, good, True), (good, "A dog.", False)]):
        rows.append(dict(pair_id=f"j{i}", lot_id="l", modality="image", media_key=f"m{i}", instruction_type=f"t{i}",
                         control="content", length_key="word_range:10:20",
                         length_constraint="The generated caption's length needs to be 10 to 20 words.", is_qcc=qcc,
                         rejection_strategy="x", split="train", seed=0, instruction=q, chosen=c, rejected=a))
    out = check_lot(rows_to_table(rows, PAIR_SCHEMA), {"judge": "offline", "judge_sample_rate": 1.0}, judge=judge)
    fails = out.column("check_failures").to_pylist()
    scores = out.column("judge_score").to_pylist()
    assert fails == [[], [JUDGE_PREFERS_REJECTED], [], []]
    assert all(s is not None and 0 <= s <= 1 for s in scores)
    assert scores[0] > scores[1]


def test_embedding_throughput(judge):
    caps = [f"Caption {i}: a {c} kite flies over a {p} while {i % 7} people watch from a hill near the water."
            for i, (c, p) in enumerate([(c, p) for c in ("red", "blue", "green", "gold") for p in ("beach", "park", "lake", "town")] * 8)]
    fresh = OfflineJudge()
    t = time.perf_counter()
    fresh.embed(caps)
    rate = len(caps) / (time.perf_counter() - t)
    print(f"\nembedding throughput: {rate:.0f} captions/s (~20-word captions, CPU)")
    assert rate > 5


# ---------------------------------------------------------------------------------------------------- reference
@NEEDS_REF
def test_keypoint_auc_on_reference(judge):
    """A caption against its OWN key points must score far above against ANOTHER item's key points."""
    from sklearn.metrics import roc_auc_score

    items = keypoint_items()
    assert len(items) >= 20, "too few reference items with key points"
    texts = []
    for it in items:
        texts += caption_units(it["caption"]) + [clean_keypoint(k) for k in it["key_points"]]
    judge.prefetch(texts)  # one batched call
    n = len(items)
    sims = [[judge.keypoint_similarities(items[a]["caption"], items[b]["key_points"]) for b in range(n)] for a in range(n)]
    y = [a == b for a in range(n) for b in range(n)]
    auc_soft = roc_auc_score(y, [sims[a][b].mean() for a in range(n) for b in range(n)])
    thr = judge.spec["keypoint_threshold"]
    auc_cov = roc_auc_score(y, [(sims[a][b] >= thr).mean() for a in range(n) for b in range(n)])
    own = float(np.mean([(sims[a][a] >= thr).mean() for a in range(n)]))
    other = float(np.mean([(sims[a][b] >= thr).mean() for a in range(n) for b in range(n) if a != b]))
    by_mod = {m: sum(it["modality"] == m for it in items) for m in ("image", "video", "audio")}
    print(f"\nkey-point AUC over {n} items {by_mod}: mean-sim {auc_soft:.3f}, coverage@{thr} {auc_cov:.3f}; "
          f"coverage own {own:.2f} vs other {other:.2f}")
    for t in (0.35, 0.4, 0.45, 0.5, 0.55, 0.6):
        o = np.mean([(sims[a][a] >= t).mean() for a in range(n)])
        x = np.mean([(sims[a][b] >= t).mean() for a in range(n) for b in range(n) if a != b])
        print(f"  threshold {t:.2f}: own coverage {o:.3f}, other coverage {x:.3f}, gap {o - x:.3f}")
    assert auc_soft >= 0.85 and auc_cov >= 0.85
    assert own - other >= 0.6


@NEEDS_REF
def test_reference_length_pass_rate():
    """Measured, not a bar we set: the release's own reference captions vs their own constraints."""
    n = ok = 0
    for p in sorted((REFERENCE_DIR / "anycapeval").glob("*/ref_*.jsonl")):
        for d in _jsonl(p):
            c = parse_constraint(d["restriction"][1]) if len(d["restriction"]) > 1 else None
            if c is not None:
                n += 1
                ok += satisfies(d["conversations"][1]["value"], c)
    rate = ok / n
    print(f"\nreference captions passing their own length constraint: {ok}/{n} = {rate:.1%}")
    assert n > 400 and 0.75 <= rate <= 0.95


@NEEDS_REF
def test_reference_training_pairs_rules():
    """Rules on the release's training pairs: real refusals/leaks are caught, clean captions pass."""
    pairs = training_pairs()
    assert len(pairs) > 1000
    n_len = ok_len = 0
    flagged = {"refusal_chosen": 0, "leak_chosen": 0, "chosen_equals_rejected": 0}
    kinds = {}
    for p in pairs:
        kinds[p["kind"]] = kinds.get(p["kind"], 0) + 1
        c = parse_constraint(p["q"])
        codes = check_pair(p["q"], p["c"], p["a"], p["kind"] == "qcc", "none", c.sentence() if c else None)
        if c is not None:
            n_len += 1
            ok_len += "length_chosen" not in codes
        for k in flagged:
            flagged[k] += k in codes
        if p["kind"] == "qcc":
            assert "qcc_rejected_differs" not in codes, p["file"]
    rate = f"{ok_len}/{n_len} = {ok_len / n_len:.1%}" if n_len else "n/a (no length sentence in any training prompt)"
    print(f"\ntraining pairs {kinds}: chosen length compliance {rate}; flags {flagged}")
    # the release's chosen captions are mostly clean: refusal/leak flags stay rare (they are true hits)
    assert flagged["refusal_chosen"] + flagged["leak_chosen"] <= 0.01 * len(pairs)
    assert flagged["refusal_chosen"] >= 1  # the slice holds real refusals ("I'm unable to generate...")


@NEEDS_REF
def test_reference_training_pairs_judge(judge):
    """The judge on real pairs: it must not fail many real q-a-c pairs (their rejected are subtle), and
    must catch an off-topic chosen (another pair's caption)."""
    pairs = [p for p in training_pairs() if p["kind"] in ("qac", "q8bc") and p["a"].strip() != p["c"].strip()]
    random.Random(0).shuffle(pairs)
    pairs = pairs[:40]
    judge.prefetch([strip_length_sentence(p["q"]) for p in pairs] + [p["c"] for p in pairs] + [p["a"] for p in pairs])
    margin = judge.spec["prefer_margin"]
    real = np.array([judge.margin(p["q"], p["c"], p["a"]) for p in pairs])
    swapped = np.array([judge.margin(p["q"], pairs[(i + 7) % len(pairs)]["c"], p["c"]) for i, p in enumerate(pairs)])
    false_fail = float((real < -margin).mean())
    caught = float((swapped < -margin).mean())
    print(f"\njudge on {len(pairs)} release q-a-c pairs: prefers chosen {1 - false_fail:.0%} "
          f"(strictly {float((real > 0).mean()):.0%}); off-topic chosen caught {caught:.0%}")
    assert false_fail <= 0.25
    assert caught >= 0.5  # measured 65% on this sample: style instructions (poems) say little about content
