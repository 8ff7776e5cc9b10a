"""Deterministic checks, near-duplicates and check_lot (no model: judge "none" or a stub judge)."""
from __future__ import annotations

import time

import pyarrow as pa
import pytest

from acd.checks import JUDGE_PREFERS_REJECTED, NEAR_DUPLICATE, check_lot, check_pair, judge_sample, near_duplicates
from acd.checks.config import checks_settings
from acd.checks.length import count_words
from acd.checks.rules import resolve_constraint
from acd.records import PAIR_SCHEMA, rows_to_table
from acd.taxonomy import LengthConstraint

WR = "The generated caption's length needs to be 10 to 20 words."
Q = "Describe the red car parked by the river. " + WR
C = "A red car is parked beside a calm river, its polished paint reflecting the soft evening light."  # 17 words
A = "A blue truck drives fast down a dusty desert road at noon under a harsh bright sun today."


def _codes(**kw):
    args = dict(instruction=Q, chosen=C, rejected=A, is_qcc=False, length_key="word_range:10:20", length_constraint=WR)
    args.update(kw)
    return check_pair(**args)


CASES = [
    # (name, overrides, expected codes)
    ("clean", {}, []),
    ("clean_qcc", dict(rejected=C, is_qcc=True), []),
    ("clean_no_length", dict(instruction="Describe the red car.", length_key="none", length_constraint=None), []),
    ("empty_chosen", dict(chosen="  \n "), ["empty_chosen"]),
    ("none_rejected", dict(rejected=None), ["empty_rejected"]),
    ("empty_instruction", dict(instruction=""), ["empty_instruction"]),
    ("refusal_sorry", dict(chosen="I'm sorry, but I can't help with describing this image."), ["refusal_chosen"]),
    ("refusal_as_ai", dict(chosen="As an AI language model, I do not have eyes but the car looks red to me."), ["refusal_chosen"]),
    ("refusal_cannot", dict(rejected="I cannot see the image you provided, so no description is possible."), ["refusal_rejected"]),
    ("refusal_unable", dict(chosen="I'm unable to view the video, but it may show a car by a river."), ["refusal_chosen"]),
    ("leak_placeholder", dict(chosen="A {object} is parked beside a calm river in the soft evening light today."), ["leak_chosen"]),
    ("leak_existing", dict(chosen="The existing caption is: a red car parked by a calm river in evening light."), ["leak_chosen"]),
    ("leak_aligner", dict(instruction="You are a multimodal aligner. " + Q), ["leak_instruction"]),
    ("leak_here_is", dict(chosen="Here is a caption: A red car is parked beside a calm river in the evening light."), ["leak_chosen"]),
    ("leak_fence", dict(chosen="```\nA red car is parked beside a calm river in the soft evening light.\n```"), ["leak_chosen"]),
    ("leak_role", dict(rejected="assistant: A blue truck drives fast down a dusty desert road at noon."), ["leak_rejected"]),
    ("leak_im_start", dict(chosen="<|im_start|>A red car is parked beside a calm river in the evening light."), ["leak_chosen"]),
    ("leak_answer", dict(chosen="Answer: A red car is parked beside a calm river in the evening light."), ["leak_chosen"]),
    ("leak_please_note", dict(rejected=A + "\n\nPlease note: this caption is slightly inferior by design."), ["leak_rejected"]),
    ("length_short", dict(chosen="A red car waits."), ["length_chosen"]),
    ("length_long", dict(chosen=C + " Two ducks swim past it while a man on the far bank waves."), ["length_chosen"]),
    ("length_from_key", dict(length_constraint=None, chosen="A red car waits."), ["length_chosen"]),
    ("length_sentence_key", dict(length_key="sentence_one", length_constraint="The generated caption's length needs to be one sentence.",
                                 instruction="Describe the car. The generated caption's length needs to be one sentence.",
                                 chosen="A red car waits. It is by a river."), ["length_chosen"]),
    ("length_missing_in_q", dict(instruction="Describe the red car parked by the river."), ["length_sentence_missing"]),
    ("length_unparsed", dict(length_constraint="Keep it shortish please."), ["length_unparsed", "length_sentence_missing"]),
    ("rejected_too_long_ok", dict(rejected=" ".join(["word"] * 40)), []),  # rejected may break length
    ("equal_qac", dict(rejected=C), ["chosen_equals_rejected"]),
    ("equal_qac_normalised", dict(rejected="  " + C.upper().replace(" ", "   ")), ["chosen_equals_rejected"]),
    ("qcc_differs", dict(is_qcc=True), ["qcc_rejected_differs"]),
    ("qcc_whitespace_ok", dict(is_qcc=True, rejected=C + "  "), []),
    # release-style instance instruction: braces around the object are not a leak in an instruction
    ("release_braces_in_q", dict(instruction="Describe the scene, making sure the {car} is not mentioned. " + WR), []),
    ("placeholder_in_q", dict(instruction="Describe the {object} in the image. " + WR), ["leak_instruction"]),
    # first-person perspective captions may say "I cannot" after the refusal window
    ("perspective_not_refusal", dict(chosen="From my seat I watch the red car by the river, and I cannot look away."), []),
]


@pytest.mark.parametrize("name,overrides,expected", CASES, ids=[c[0] for c in CASES])
def test_check_pair_table(name, overrides, expected):
    assert _codes(**overrides) == expected


def test_resolve_constraint_sources():
    assert resolve_constraint(WR, None) == LengthConstraint(form="word_range", lo=10, hi=20)
    assert resolve_constraint(None, "word_exact:50") == LengthConstraint(form="word_exact", n=50)
    assert resolve_constraint(None, "word_exact:35") == LengthConstraint(form="word_exact", n=35)  # off-recipe key
    assert resolve_constraint(None, "none") is None


# ---------------------------------------------------------------------------------------------------- near-dup
BASE = ("A young woman in a yellow raincoat walks her small brown dog along a wet cobblestone street. "
        "Neon shop signs glow in the puddles while a cyclist passes in the distance. "
        "Rain keeps falling softly over the old town at dusk.")
PARAPHRASE_COPY = ("Rain keeps falling softly over the old town at dusk!  the young woman, in the yellow raincoat, "
                   "walks her small brown dog along a wet cobblestone street; neon shop signs glow in puddles "
                   "while the cyclist passes in the distance.")
DISTINCT = [
    "A red circle sits in the top left corner of a white canvas, next to a small green square.",
    "A blue circle sits in the bottom right corner of a white canvas, next to a large green square.",
    "Two cyclists race down a mountain road as clouds roll over the snowy peaks behind them.",
    "A dog barks twice, then a door slams and footsteps fade away down a hallway.",
]


def test_near_duplicate_paraphrase_copy_flagged():
    caps = [BASE, DISTINCT[0], PARAPHRASE_COPY]
    flags = near_duplicates(caps, ["m1", "m2", "m3"], ["detail"] * 3, 0.98)
    assert flags == [False, False, True]


def test_near_duplicate_rules():
    # same media item: not a degenerate copy (one item, several length constraints)
    assert near_duplicates([BASE, BASE], ["m1", "m1"], ["detail"] * 2, 0.98) == [False, False]
    # different instruction type: not compared
    assert near_duplicates([BASE, BASE], ["m1", "m2"], ["detail", "brief"], 0.98) == [False, False]
    # earlier-only: the first occurrence stays, later copies are flagged; same-media copy of a flagged one too
    assert near_duplicates([BASE, BASE, BASE, BASE], ["m1", "m1", "m2", "m1"], ["d"] * 4, 0.98) == [False, False, True, True]
    # template captions with different slot values are distinct
    assert near_duplicates(DISTINCT, ["a", "b", "c", "d"], ["d"] * 4, 0.98) == [False] * 4
    # empty captions are left to the empty check
    assert near_duplicates(["", ""], ["a", "b"], ["d", "d"], 0.98) == [False, False]


def test_near_duplicate_one_word_change_depends_on_threshold():
    changed = BASE.replace("small brown dog", "small black dog")
    assert near_duplicates([BASE, changed], ["a", "b"], ["d"] * 2, 0.98) == [False, False]
    assert near_duplicates([BASE, changed], ["a", "b"], ["d"] * 2, 0.8) == [False, True]


def test_near_duplicate_speed_2k():
    caps = [f"Scene {i}: a {c} {s} number {i * 7 % 13} rests near item {i % 17} on a {b} table while {i % 5} birds sing."
            for i, (c, s, b) in enumerate((c, s, b) for c in ("red", "blue", "green", "gold") for s in ("cube", "ball", "cone")
                                          for b in ("wooden", "glass", "metal", "stone")) for _ in range(1)]
    caps = (caps * 50)[:2000]
    caps = [c.replace("Scene", f"Shot {i}") for i, c in enumerate(caps)]
    t = time.perf_counter()
    near_duplicates(caps, [f"m{i}" for i in range(2000)], ["detail"] * 2000, 0.98)
    dt = time.perf_counter() - t
    print(f"near-dup: 2000 captions in {dt * 1000:.0f} ms")
    assert dt < 1.0


# ---------------------------------------------------------------------------------------------------- check_lot
def make_lot(n: int, seed: int = 0) -> pa.Table:
    """A lot with clean pairs and every failure kind sprinkled in at fixed positions."""
    rows = []
    colours = ["red", "blue", "green", "yellow", "black", "white", "orange", "purple", "silver", "brown"]
    things = ["car", "boat", "kite", "dog", "lamp", "chair", "horse", "train", "clock", "tent"]
    places = ["river", "field", "harbour", "street", "garden", "beach", "forest", "bridge", "market", "roof"]
    for i in range(n):
        c, t, p = colours[i % 10], things[(i // 10) % 10], places[(i // 100) % 10]
        qcc = i % 5 == 0
        art = "An" if c[0] in "aeiou" else "A"
        chosen = (f"{art} {c} {t} rests near the {p} as item {i} catches the light, with soft shadows "
                  f"stretching across the ground.")  # 19 words
        rejected = chosen if qcc else f"A {t} is somewhere."
        rows.append(dict(
            pair_id=f"p{seed}-{i:06d}", lot_id="lot-0", modality="image", media_key=f"media-{i}",
            instruction_type=["brief", "detail", "poem"][i % 3], control="style", length_key="word_range:10:20",
            length_constraint=WR, is_qcc=qcc, rejection_strategy="identical" if qcc else "length_violation",
            split="train", seed=seed, instruction=f"Describe the {t}. {WR}", chosen=chosen, rejected=rejected,
        ))
    rows[1]["chosen"] = "I'm sorry, but I cannot describe this image."
    rows[2]["chosen"] = "A {colour} car waits."
    rows[3]["chosen"] = "It is short."
    rows[4]["rejected"] = rows[4]["chosen"]
    rows[6]["chosen"] = rows[7]["chosen"]  # copy of a later row's caption: row 7 is the near-duplicate
    rows[6]["instruction_type"] = rows[7]["instruction_type"]
    return rows_to_table(rows, PAIR_SCHEMA)


def test_check_lot_shape_and_codes():
    lot = make_lot(60)
    out = check_lot(lot, {"judge": "none", "near_duplicate_threshold": 0.98})
    assert out.schema == lot.schema and out.num_rows == lot.num_rows
    assert out.column("pair_id").to_pylist() == lot.column("pair_id").to_pylist()
    fails = out.column("check_failures").to_pylist()
    passed = out.column("check_passed").to_pylist()
    assert fails[1] == ["refusal_chosen", "length_chosen"]
    assert fails[2] == ["leak_chosen", "length_chosen"]
    assert fails[3] == ["length_chosen"]
    assert fails[4] == ["chosen_equals_rejected"]
    assert fails[6] == [] and fails[7] == [NEAR_DUPLICATE]
    assert all(p == (not f) for p, f in zip(passed, fails))
    assert sum(passed) == 60 - 5
    assert out.column("judge_score").null_count == 60


def test_check_lot_deterministic_and_accepts_plan_only_columns():
    lot = make_lot(200)
    a = check_lot(lot, {"judge": "none"})
    b = check_lot(lot.select([c for c in lot.column_names if not c.startswith(("check_", "judge_"))]), {"judge": "none"})
    assert a.column("check_failures").to_pylist() == b.column("check_failures").to_pylist()
    assert a.equals(check_lot(lot, {"judge": "none"}))


class StubJudge:
    """Prefers shorter captions: enough to see check_lot wire verdicts and scores."""

    spec = {"prefer_margin": 0.05}

    def __init__(self):
        self.prefetched = 0

    def prefetch(self, texts):
        self.prefetched += len(texts)

    def compliance(self, instruction, caption, length=None, key_points=None):
        return 1.0 / (1 + count_words(caption))


def test_check_lot_judge_sample_and_verdicts():
    lot = make_lot(100)
    judge = StubJudge()
    out = check_lot(lot, {"judge": "offline", "judge_sample_rate": 0.3, "judge_min_per_lot": 4}, judge=judge)
    scores = out.column("judge_score").to_pylist()
    fails = out.column("check_failures").to_pylist()
    judged = [i for i, s in enumerate(scores) if s is not None]
    assert 15 <= len(judged) <= 45 and judge.prefetched > 0
    for i in judged:
        qcc = lot.column("is_qcc")[i].as_py()
        # stub prefers the 4-word rejected over the 19-word chosen on every q-a-c pair
        assert (JUDGE_PREFERS_REJECTED in fails[i]) == (not qcc)
    # failing rows (deterministic) are never judged
    assert all(scores[i] is None for i in (1, 2, 3, 4, 7))
    again = check_lot(lot, {"judge": "offline", "judge_sample_rate": 0.3, "judge_min_per_lot": 4}, judge=StubJudge())
    assert again.equals(out)


def test_judge_sample_is_stable_and_has_floor():
    ids = [f"pair-{i}" for i in range(1000)]
    s1 = judge_sample(ids, [True] * 1000, 0.05, 0)
    assert s1 == judge_sample(ids, [True] * 1000, 0.05, 0)
    assert 25 <= sum(s1) <= 80
    # a pair's membership does not depend on its lot neighbours (when above the floor)
    assert judge_sample(ids[:500], [True] * 500, 0.05, 0) == s1[:500]
    assert sum(judge_sample(ids[:20], [True] * 20, 0.0, 4)) == 4
    assert sum(judge_sample(ids[:20], [False] * 20, 1.0, 4)) == 0


def test_checks_settings_validates():
    assert checks_settings(None).judge == "offline"
    assert checks_settings({"judge_sample_rate": 1}).judge_sample_rate == 1.0
    with pytest.raises(ValueError):
        checks_settings({"judge": "gpt"})
    with pytest.raises(ValueError):
        checks_settings({"near_duplicate_threshold": 1.5})


def test_llm_judge_without_object_is_explicit():
    with pytest.raises(ValueError, match="judge object"):
        check_lot(make_lot(10), {"judge": "llm"})


def test_llm_judge_verdicts_drive_check_failures(tmp_path):
    """An LLM judge over a real OpenAI-compatible server: its JSON verdicts decide which pairs fail."""
    from PIL import Image

    from acd.backends.base import make_backend
    from acd.backends.llm_judge import LLMCheckJudge
    from acd.testing.openai_server import OpenAITestServer

    lot = make_lot(40)
    lot = lot.take([i for i in range(40) if i not in (1, 2, 3, 4, 6, 7)])  # only pairs the rules pass
    media = {}
    for i, key in enumerate(lot.column("media_key").to_pylist()):
        path = tmp_path / f"{key}.jpg"
        Image.new("RGB", (32, 24), (i * 7 % 256, 90, 160)).save(path)
        media[key] = {"media_key": key, "modality": "image", "ext": "jpg", "mime": "image/jpeg", "path": str(path)}
    with OpenAITestServer(median=0.001) as srv:
        backend = make_backend({"name": "openai", "endpoints": [{"base_url": srv.base_url}], "model": "judge-m",
                                "max_retries": 0})
        judge = LLMCheckJudge(backend).bind_media(media)
        out = check_lot(lot, {"judge": "llm", "judge_sample_rate": 1.0}, judge).to_pylist()
        assert srv.stats()["outcomes"].get("ok", 0) == lot.num_rows  # one judge request per pair
        verdicts = {v["pair_id"]: v for v in judge.verdicts(lot.to_pylist())}  # the server answers deterministically
    for row in out:
        v = verdicts[row["pair_id"]]
        assert row["judge_score"] == v["score"] / 4
        assert ("judge_chosen_noncompliant" in row["check_failures"]) == (not v["chosen_complies"])
        assert row["check_passed"] == (v["chosen_complies"] and (row["is_qcc"] or v["rejected_worse"]))
    assert 0 < sum(not r["check_passed"] for r in out) < len(out)


def test_short_fact_poor_captions_are_not_near_duplicates_but_long_copies_are():
    from acd.checks.neardup import near_duplicates

    short = "The background is a night sky in dark blue tones."
    long = ("A red car rests near the river as the evening light fades, with soft shadows stretching across the "
            "wet ground and a small boat drifting past the old wooden pier.")
    flags = near_duplicates([short, short, long, long], ["m1", "m2", "m1", "m2"], ["background"] * 4, 0.98)
    assert flags == [False, False, False, True]


def test_llm_judge_binding_is_per_lot():
    """Lots run on threads sharing one Build: binding one lot's media must not change another lot's judge."""
    from acd.backends.llm_judge import LLMCheckJudge

    shared = LLMCheckJudge(backend=None)
    a = shared.bind_media({"m1": {"media_key": "m1"}})
    b = shared.bind_media({"m2": {"media_key": "m2"}})
    assert a.media_by_key == {"m1": {"media_key": "m1"}} and b.media_by_key == {"m2": {"media_key": "m2"}}
    assert shared.media_by_key == {} and a.inner is shared.inner  # the backend client is shared, not copied
