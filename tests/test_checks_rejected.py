"""The rejected-caption check (acd/checks/rejected.py, reason `rejected_not_worse`; issue 21, point 4): a
rejected caption must be worse than the chosen one in the way its rejection_strategy records.

Every pair here is a real pair of the baseline demo (`make demo` on main 425cb1c, pair ids given) with its
media's grounding as the demo's ingest parts hold it. Where a strategy had no failing pair in that demo, a real
rejected caption of another strategy is re-labelled, and the test says so.
"""
from __future__ import annotations

import pytest

from acd.backends.base import GenRequest
from acd.backends.grounded import GroundedBackend
from acd.checks.coverage import problems as coverage_problems
from acd.checks.rejected import REJECTED, not_worse, stated_facts
from acd.checks.rules import check_pair, resolve_constraint

G_BELL_CLAP = ('{"duration_s":2.0,"events":[{"sounds":["s1"],"t":0.1,"type":"start"},{"sounds":["s1"],"t":0.95,"type":"stop"},'
               '{"sounds":["s2"],"t":1.21,"type":"start"},{"sounds":["s2"],"t":1.73,"type":"stop"}],"kind":"audio",'
               '"sample_rate":16000,"scene":{"background":"wind","mood":"lively"},"sounds":[{"category":"tonal","end":0.95,'
               '"id":"s1","loudness":"soft","pattern":"two rings","pitch":"high","source":"bell","start":0.1},{"category":'
               '"percussive","end":1.73,"id":"s2","loudness":"loud","pattern":"three claps","pitch":"low","source":"clap",'
               '"start":1.21}]}')
G_BEACH = ('{"kind":"image","objects":[{"attributes":["with a forked tail"],"bbox":[0.634,0.287,0.922,0.496],"category":"fish",'
           '"colour":"blue","id":"o1","position":"right","size":"medium"},{"attributes":["with a small beak","with a wing"],'
           '"bbox":[0.694,0.65,0.947,0.9],"category":"bird","colour":"blue","id":"o2","position":"bottom right","size":"medium"},'
           '{"attributes":["diamond-shaped","with a tail"],"bbox":[0.362,0.725,0.475,0.933],"category":"kite","colour":"purple",'
           '"id":"o3","position":"bottom","size":"small"},{"attributes":["open","with a curved handle"],"bbox":[0.163,0.696,0.312,'
           '0.896],"category":"umbrella","colour":"purple","id":"o4","position":"bottom left","size":"small"}],"scene":'
           '{"background":"beach","background_colour":"sandy yellow","decorations":["ripples in the sand"],"lighting":'
           '"golden evening light","mood":"peaceful","viewpoint":"top-down"}}')
G_WHISTLE_CLAP = ('{"duration_s":2.5,"events":[{"sounds":["s1"],"t":0.13,"type":"start"},{"sounds":["s1"],"t":0.7,"type":"stop"},'
                  '{"sounds":["s2"],"t":1.14,"type":"start"},{"sounds":["s2"],"t":1.66,"type":"stop"}],"kind":"audio",'
                  '"sample_rate":16000,"scene":{"background":"wind","mood":"cheerful"},"sounds":[{"category":"tonal","end":0.7,'
                  '"id":"s1","loudness":"loud","pattern":"two short whistles","pitch":"high","source":"whistle","start":0.13},'
                  '{"category":"percussive","end":1.66,"id":"s2","loudness":"loud","pattern":"three claps","pitch":"high",'
                  '"source":"clap","start":1.14}]}')
G_BEACH_VIDEO = ('{"camera":{"motion":"static","speed":null},"duration_s":3.0,"events":[{"objects":["o1","o2","o3"],"t":0.0,'
                 '"type":"appear"},{"objects":["o3"],"t":1.625,"type":"leave"},{"objects":["o1","o2"],"t":2.125,"type":"collide"}],'
                 '"fps":8,"kind":"video","objects":[{"action":"moves to the right","attributes":["with a handle","striped"],'
                 '"bbox":[0.021,0.174,0.188,0.396],"category":"cup","colour":"grey","end_position":"top","id":"o1","position":'
                 '"top left","size":"medium","speed":"slow"},{"action":"moves to the left","attributes":["oval","with a string"],'
                 '"bbox":[0.63,0.125,0.792,0.451],"category":"balloon","colour":"black","end_position":"top","id":"o2",'
                 '"position":"top right","size":"medium","speed":"slow"},{"action":"moves from right to left","attributes":'
                 '["with pointed ears","with a long tail"],"bbox":[0.656,0.632,0.781,0.771],"category":"cat","colour":"orange",'
                 '"end_position":"bottom left","id":"o3","position":"bottom right","size":"small","speed":"fast"}],"scene":'
                 '{"background":"beach","background_colour":"sandy yellow","decorations":["ripples in the sand"],"lighting":'
                 '"overcast","mood":"quiet","viewpoint":"top-down"}}')
G_FOREST = ('{"kind":"image","objects":[{"attributes":["with two visible wheels","with side windows"],"bbox":[0.003,0.487,0.403,'
            '0.779],"category":"car","colour":"white","id":"o1","position":"left","size":"large"},{"attributes":["five-pointed"],'
            '"bbox":[0.447,0.096,0.731,0.458],"category":"star","colour":"orange","id":"o2","position":"top","size":"large"},'
            '{"attributes":["leafy","with a brown trunk"],"bbox":[0.806,0.388,0.916,0.579],"category":"tree","colour":"orange",'
            '"id":"o3","position":"right","size":"small"},{"attributes":["round","shiny"],"bbox":[0.65,0.583,0.859,0.863],'
            '"category":"ball","colour":"red","id":"o4","position":"bottom right","size":"medium"}],"scene":{"background":'
            '"forest","background_colour":"dark green","decorations":["blades of grass"],"lighting":"dim light","mood":"gloomy",'
            '"viewpoint":"top-down"}}')
G_ROOM_CAT = ('{"kind":"image","objects":[{"attributes":["with pointed ears","with a long tail","spotted"],"bbox":[0.003,0.267,'
              '0.25,0.533],"category":"cat","colour":"grey","id":"o1","position":"left","size":"medium"}],"scene":{"background":'
              '"room","background_colour":"beige","decorations":["a window in the wall","a wooden plank floor"],"lighting":'
              '"dim light","mood":"quiet","viewpoint":"eye level"}}')
G_FOREST_BIRD = ('{"kind":"image","objects":[{"attributes":["with five petals","with a yellow centre"],"bbox":[0.344,0.571,0.478,'
                 '0.9],"category":"flower","colour":"orange","id":"o1","position":"bottom","size":"medium"},{"attributes":'
                 '["diamond-shaped","with a tail","spotted"],"bbox":[0.684,0.05,0.947,0.546],"category":"kite","colour":"red",'
                 '"id":"o2","position":"top right","size":"large"},{"attributes":["with a small beak","with a wing"],"bbox":'
                 '[0.703,0.588,0.938,0.821],"category":"bird","colour":"white","id":"o3","position":"bottom right","size":'
                 '"medium"},{"attributes":["leafy","with a brown trunk"],"bbox":[0.159,0.033,0.347,0.367],"category":"tree",'
                 '"colour":"yellow","id":"o4","position":"top left","size":"medium"}],"scene":{"background":"forest",'
                 '"background_colour":"dark green","decorations":["a row of pine trees","blades of grass"],"lighting":'
                 '"bright daylight","mood":"lively","viewpoint":"eye level"}}')
G_BELL_CHIRP = ('{"duration_s":2.0,"events":[{"sounds":["s1"],"t":0.17,"type":"start"},{"sounds":["s1"],"t":1.02,"type":"stop"},'
                '{"sounds":["s2"],"t":1.23,"type":"start"},{"sounds":["s2"],"t":1.68,"type":"stop"}],"kind":"audio",'
                '"sample_rate":16000,"scene":{"background":"low hum","mood":"cheerful"},"sounds":[{"category":"tonal","end":1.02,'
                '"id":"s1","loudness":"loud","pattern":"two rings","pitch":"low","source":"bell","start":0.17},{"category":'
                '"animal","end":1.68,"id":"s2","loudness":"soft","pattern":"a quick trill","pitch":"high","source":"chirp",'
                '"start":1.23}]}')
G_CHIRP_ENGINE_HORN = ('{"duration_s":4.0,"events":[{"sounds":["s1"],"t":0.11,"type":"start"},{"sounds":["s1"],"t":0.49,"type":'
                       '"stop"},{"sounds":["s2"],"t":0.83,"type":"start"},{"sounds":["s2"],"t":2.03,"type":"stop"},{"sounds":'
                       '["s3"],"t":2.27,"type":"start"},{"sounds":["s3"],"t":2.72,"type":"stop"}],"kind":"audio","sample_rate":'
                       '16000,"scene":{"background":"rain-like noise","mood":"busy"},"sounds":[{"category":"animal","end":0.49,'
                       '"id":"s1","loudness":"soft","pattern":"three chirps","pitch":"low","source":"chirp","start":0.11},'
                       '{"category":"mechanical","end":2.03,"id":"s2","loudness":"loud","pattern":"a steady rumble","pitch":"low",'
                       '"source":"engine","start":0.83},{"category":"tonal","end":2.72,"id":"s3","loudness":"soft","pattern":'
                       '"one honk","pitch":"high","source":"horn","start":2.27}]}')

TEN_MAX = "The generated caption's length needs to be no more than 10 words."
TEN_EXACT = "The generated caption's length needs to be exactly 10 words."
RANGE_10_20 = "The generated caption's length needs to be 10 to 20 words."

# pair 7210aba5ebbc21edbaefb76e: the "hallucination" swaps the bell for "clapping" beside a real clap; the fact
# check (and a reader) take the clapping for the clap, so nothing false is said
HALL_FAIL = dict(pair_id="7210aba5ebbc21edbaefb76e", modality="audio", instruction_type="poem",
                 rejection_strategy="hallucination", length_constraint=None, grounding=G_BELL_CLAP,
                 instruction="Craft a poetic caption that captures the essence of this audio.",
                 chosen="At the beginning the bell calls,\nSoft and high-pitched as the moment falls.\n"
                        "The clip gives the clap a turn,\nThree claps, for us to learn.",
                 rejected="Hear the clapping, faint and high-pitched,\nTwo rings, quick and clear.\n"
                          "A loud, low-pitched clap rings towards the end,\nThree claps, and then again the calm.")
# pair 359a4b55aa9291c0bb75f624: a silver umbrella where it is purple
HALL_PASS = dict(pair_id="359a4b55aa9291c0bb75f624", modality="image", instruction_type="appearance",
                 rejection_strategy="hallucination", length_constraint=TEN_MAX, grounding=G_BEACH,
                 instruction=f"Describe the appearance and characteristics of the umbrella in the image. {TEN_MAX}",
                 chosen="The umbrella is depicted as a small open purple umbrella.",
                 rejected="The umbrella is silver in hue and small in size.")
# pair 0ce3e47f556618adcd9ae0e1: the blind readers' case: a "brief" rejection that is a detail caption, as long
# as the chosen, naming the same sounds and adding true details (loud, high-pitched, two short whistles)
IGNORE_FAIL = dict(pair_id="0ce3e47f556618adcd9ae0e1", modality="audio", instruction_type="brief",
                   rejection_strategy="ignore_instruction", length_constraint=RANGE_10_20, grounding=G_WHISTLE_CLAP,
                   instruction=f"{RANGE_10_20} Provide a brief caption that accurately captures the key elements of this audio.",
                   chosen="Layers of sound make up the clip: the rush of wind underneath, and a whistle and a clap above.",
                   rejected="Here, blowing wind carries a whistle and a clap. Early on follows a loud, high-pitched whistle, "
                            "sounding two short whistles.")
# pair 292fd3e6ce1c1eec89684042: a "detail" instruction answered with a brief caption that still names every object
IGNORE_FAIL_DETAIL = dict(
    pair_id="292fd3e6ce1c1eec89684042", modality="video", instruction_type="detail", rejection_strategy="ignore_instruction",
    length_constraint=None, grounding=G_BEACH_VIDEO,
    instruction="Provide a comprehensive description that captures all observable elements of the video.",
    chosen="The clip shows a grey cup, a black balloon, and an orange cat placed before an open beach. The cup sets out from "
           "its spot at the top left. The grey cup moves to the right as the seconds pass. At the start, the balloon is in "
           "the upper right corner. As the clip goes on, this black balloon moves to the left. The orange cat begins its "
           "motion in the bottom-right area. What stands out is that the orange cat moves from right to left. When the clip "
           "begins, the grey cup appears off to the left of the black balloon. At the back, an open beach fills the view. In "
           "the distance, you can make out small ripples in the sand. Illumination is given by diffuse overcast light "
           "throughout.",
    rejected="What fills the clip is a grey cup, a black balloon, and an orange cat, with a beach in the back.")
# pair 1761530f00e4da12a6ddb860: "without referring to the tree", and the rejected caption is about the tree
IGNORE_PASS = dict(pair_id="1761530f00e4da12a6ddb860", modality="image", instruction_type="instance",
                   rejection_strategy="ignore_instruction", length_constraint=TEN_EXACT, grounding=G_FOREST,
                   instruction=f"Provide a description of the scene without referring to the tree. {TEN_EXACT}",
                   chosen="A large white car lies midway down the left side.",
                   rejected="A small orange tree is perched by the right edge.")
# pair 4d550a217f005da9f3e57ad9: 20 words where at most 10 are allowed
LENGTH_PASS = dict(pair_id="4d550a217f005da9f3e57ad9", modality="image", instruction_type="brief",
                   rejection_strategy="length_violation", length_constraint=TEN_MAX, grounding=G_ROOM_CAT,
                   instruction="Provide a brief caption that accurately captures the key elements of this image. The generated "
                               f"content needs to truly reflect the content of the image, please do not add non-existent "
                               f"content. {TEN_MAX}",
                   chosen="It shows a cat. The dominant background colour is beige.",
                   rejected="The central content of the picture is a medium grey cat, seen against a plain room. The cat is by "
                            "the left edge.")
# pair 23475d44719313a80f82441b's weak_model rejection (9 words), re-labelled length_violation: the demo had no
# length_violation rejection that kept its constraint
LENGTH_FAIL = dict(pair_id="23475d44719313a80f82441b", modality="image", instruction_type="position",
                   rejection_strategy="length_violation", length_constraint=TEN_MAX, grounding=G_FOREST_BIRD,
                   instruction=f"{TEN_MAX} Describe the positions of the bird and the tree in the image.",
                   chosen="The white bird shows up in the bottom right corner.",
                   rejected="This white bird can be found on the left side.")
# pair fbaa0321239db406d8a10503: the weak caption names the same sounds and backdrop and adds "a loud doorbell",
# which a reader (and the fact check) takes for the bell: no slip, no fewer facts
WEAK_FAIL = dict(pair_id="fbaa0321239db406d8a10503", modality="audio", instruction_type="brief",
                 rejection_strategy="weak_model", length_constraint=None, grounding=G_BELL_CHIRP,
                 instruction="Provide a concise caption to highlight the key information in the audio.",
                 chosen="Above a constant low drone, the clip offers a bell and a chirp.",
                 rejected="What plays is a chirp and a bell against a low, steady hum. Towards the end, one catches a loud "
                          "doorbell.")
# pair 0604c16ce8215f0d4a94ccd4: one sound of three, and a slip (the chirp is soft, not strong)
WEAK_PASS = dict(pair_id="0604c16ce8215f0d4a94ccd4", modality="audio", instruction_type="brief",
                 rejection_strategy="weak_model", length_constraint=TEN_EXACT, grounding=G_CHIRP_ENGINE_HORN,
                 instruction=f"Use a brief sentence to describe the content of this audio. {TEN_EXACT}",
                 chosen="The clip holds a chirp, an engine, and a horn.",
                 rejected="A strong, low chirp plays over a soft, rain-like hiss.")


def _why(pair: dict, **over) -> str | None:
    p = dict(pair, **over)
    return not_worse(p["instruction"], p["chosen"], p["rejected"], modality=p["modality"],
                     instruction_type=p["instruction_type"], rejection_strategy=p["rejection_strategy"],
                     constraint=resolve_constraint(p["length_constraint"], None), grounding=p["grounding"])


@pytest.mark.parametrize("fail, ok", [(HALL_FAIL, HALL_PASS), (IGNORE_FAIL, IGNORE_PASS), (IGNORE_FAIL_DETAIL, IGNORE_PASS),
                                      (LENGTH_FAIL, LENGTH_PASS), (WEAK_FAIL, WEAK_PASS)],
                         ids=["hallucination", "ignore_brief", "ignore_detail", "length_violation", "weak_model"])
def test_each_strategy_fails_when_not_worse_and_passes_when_worse(fail, ok):
    why = _why(fail)
    assert why and why.startswith(fail["rejection_strategy"]), why
    assert _why(ok) is None


def test_without_a_grounding_what_the_instruction_and_words_can_say():
    # hallucination: a rejected caption that adds no content word cannot state anything new (pair 292fd3e6's
    # rejected caption, re-labelled); the clapping poem does add words, so it passes without a grounding
    assert _why(IGNORE_FAIL_DETAIL, rejection_strategy="hallucination", grounding=None)
    assert _why(HALL_FAIL, grounding=None) is None
    # ignore_instruction: the instruction names what the instance caption must leave out; "brief" names nothing,
    # so without a grounding nothing can hold the rejected caption to it (undecided, not failed: real media with
    # a model backend would otherwise lose most ignore_instruction pairs)
    assert _why(IGNORE_PASS, grounding=None) is None
    assert _why(IGNORE_FAIL, grounding=None) is None
    assert _why(dict(IGNORE_PASS, rejected=IGNORE_PASS["chosen"] + " Nothing else."), grounding=None)
    # weak_model: without a grounding nothing says which caption is truer (a weaker model may name more, wrongly)
    assert _why(WEAK_PASS, grounding=None) is None
    assert _why(WEAK_FAIL, grounding=None) is None
    assert _why(WEAK_FAIL)  # with its grounding the doorbell caption is seen to be no worse


def test_skipped_without_a_strategy_or_for_identical():
    assert _why(WEAK_FAIL, rejection_strategy=None) is None
    assert _why(WEAK_FAIL, rejection_strategy="identical") is None


def test_length_violation_without_a_constraint_is_judged_as_weak():
    assert _why(WEAK_PASS, rejection_strategy="length_violation", length_constraint=None) is None
    assert _why(WEAK_FAIL, rejection_strategy="length_violation") is not None


def test_stated_facts_counts_what_is_bound_truly():
    chosen = stated_facts(WEAK_PASS["chosen"], "audio", G_CHIRP_ENGINE_HORN)
    rejected = stated_facts(WEAK_PASS["rejected"], "audio", G_CHIRP_ENGINE_HORN)
    assert {("named", "s1"), ("named", "s2"), ("named", "s3")} <= chosen
    # "strong" is not the soft chirp's loudness ("soft" there is the backdrop's "soft, rain-like hiss")
    assert {("named", "s1"), ("pitch", "s1"), ("background",)} == rejected
    # a decimal point does not end a clause: the chirp's start and stop are bound to it
    said = stated_facts("The chirp is heard from 0.1 to 0.5 seconds.", "audio", G_CHIRP_ENGINE_HORN)
    assert {("start", "s1"), ("stop", "s1")} <= said


def test_through_check_pair():
    p = IGNORE_FAIL
    args = (p["instruction"], p["chosen"], p["rejected"], False, "word_range:10:20", p["length_constraint"])
    kw = dict(modality=p["modality"], grounding=p["grounding"], instruction_type=p["instruction_type"])
    assert check_pair(*args, **kw, rejection_strategy="ignore_instruction") == [REJECTED]
    assert check_pair(*args, **kw, rejection_strategy=None) == []
    q = IGNORE_PASS
    assert REJECTED not in check_pair(q["instruction"], q["chosen"], q["rejected"], False, "word_exact:10",
                                      q["length_constraint"], modality="image", grounding=q["grounding"],
                                      instruction_type="instance", rejection_strategy="ignore_instruction")


# ------------------------------------------------------------------------------------ the grounded writer
REAL = [HALL_FAIL, HALL_PASS, IGNORE_FAIL, IGNORE_FAIL_DETAIL, IGNORE_PASS, LENGTH_PASS, LENGTH_FAIL, WEAK_FAIL, WEAK_PASS]
SEEDS = {"7210aba5ebbc21edbaefb76e": 201795302836754, "359a4b55aa9291c0bb75f624": 272218840645486,
         "0ce3e47f556618adcd9ae0e1": 36349200727753, "292fd3e6ce1c1eec89684042": 260622668025159,
         "1761530f00e4da12a6ddb860": 62344883546652, "4d550a217f005da9f3e57ad9": 34969964640164,
         "23475d44719313a80f82441b": 64956160545352, "fbaa0321239db406d8a10503": 124796594157270,
         "0604c16ce8215f0d4a94ccd4": 207144775707389}
KEYS = {TEN_MAX: "word_max:10", TEN_EXACT: "word_exact:10", RANGE_10_20: "word_range:10:20", None: "none"}


def test_grounded_writer_rejections_are_worse_in_their_recorded_way():
    """The writer's rejections of these demo pairs' media, every strategy, regenerated with the current code,
    pass the check (on all baseline demo pairs: 0 of 1257 fail it, was 224)."""
    be = GroundedBackend()
    checked = 0
    for real in REAL:
        media = {"grounding": real["grounding"], "media_key": real["pair_id"], "modality": real["modality"]}
        pair = dict(pair_id=real["pair_id"], seed=SEEDS[real["pair_id"]], modality=real["modality"],
                    instruction_type=real["instruction_type"], length_key=KEYS[real["length_constraint"]],
                    length_constraint=real["length_constraint"], is_qcc=False)

        def gen(role, p):
            res = be.generate([GenRequest(request_id="t", pair=p, role=role, media=media, params={"attempt": 0})])[0]
            assert res.status == "ok", res.error
            return res.text

        pair["instruction"] = gen("instruct", pair)
        pair["chosen"] = gen("chosen", pair)
        if coverage_problems(pair["chosen"], pair["modality"], pair["instruction_type"], pair["instruction"],
                             pair["grounding"] if "grounding" in pair else real["grounding"]):
            continue  # a chosen caption short of its contract is the coverage check's failure, not this one's
        for strategy in ("hallucination", "ignore_instruction", "weak_model", "length_violation"):
            if strategy == "length_violation" and real["length_constraint"] is None:
                continue
            p = dict(pair, rejection_strategy=strategy)
            rejected = gen("rejected", p)
            why = not_worse(p["instruction"], p["chosen"], rejected, modality=p["modality"],
                            instruction_type=p["instruction_type"], rejection_strategy=strategy,
                            constraint=resolve_constraint(p["length_constraint"], None), grounding=real["grounding"])
            assert why is None, (real["pair_id"], strategy, p["chosen"], rejected, why)
            checked += 1
    assert checked >= 25
