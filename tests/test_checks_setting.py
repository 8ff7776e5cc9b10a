"""Setting as shown (acd/checks/setting.py, part of the fact check, reason fact_chosen): a caption names a
backdrop only while the frames show what makes it one. Failing examples are chosen captions that blind readers
rejected as "setting not as shown" in the development reads (tests/data/reader/baseline_*.jsonl); passing ones
are captions readers accepted, or the failing ones said as the frames show them. Groundings are those pairs'
(read from the rendered frames), trimmed."""
from __future__ import annotations

import json

import pytest

from acd.checks.coverage import problems as coverage_problems
from acd.checks.factcheck import FACT, problems as fact_problems
from acd.checks.rules import check_pair
from acd.checks.setting import name_shown, problems

TOP_DOWN_FOREST = {  # pair 3b2d7cd6: "'against a dense forest' - only dark green ground is shown"
    "kind": "video", "duration_s": 2.0, "fps": 8, "camera": {"motion": "static", "speed": None},
    "scene": {"background": "forest", "background_colour": "dark green", "decorations": ["blades of grass"],
              "ground_visible": True, "lighting": "dim light", "mood": "gloomy", "viewpoint": "top-down"},
    "objects": [{"id": "o1", "category": "fish", "colour": "purple", "size": "medium", "position": "top right",
                 "end_position": "top right", "action": "grows", "attributes": ["spotted"]}],
    "events": [{"objects": ["o1"], "t": 0.0, "type": "appear"}],
}
LOW_FOREST = {  # pair 74b6c78a (accepted): a low angle shows the row of pines
    "kind": "image",
    "scene": {"background": "forest", "background_colour": "light blue",
              "decorations": ["a row of pine trees", "blades of grass"], "ground_visible": True,
              "lighting": "bright daylight", "mood": "lively", "viewpoint": "low angle"},
    "objects": [{"id": "o1", "category": "kite", "colour": "black", "size": "large", "position": "top"},
                {"id": "o2", "category": "bird", "colour": "purple", "size": "small", "position": "right"},
                {"id": "o3", "category": "balloon", "colour": "purple", "size": "large", "position": "left"}],
}
LOW_BEACH = {  # pair 4240afbb: "'against an open beach' - frames show sky and a strip of sea, no sand"
    "kind": "video", "duration_s": 2.5, "fps": 8, "camera": {"motion": "pan left", "speed": "fast"},
    "scene": {"background": "beach", "background_colour": "light grey",
              "decorations": ["white clouds", "a strip of blue sea"], "ground_visible": False,
              "lighting": "overcast", "mood": "gloomy", "viewpoint": "low angle"},
    "objects": [{"id": "o1", "category": "umbrella", "colour": "grey", "size": "medium", "position": "left",
                 "end_position": "right", "action": "moves from left to right"},
                {"id": "o2", "category": "heart", "colour": "white", "size": "medium", "position": "bottom right",
                 "end_position": "bottom left", "action": "moves from right to left"}],
    "events": [{"objects": ["o1", "o2"], "t": 0.0, "type": "appear"}, {"objects": ["o1"], "t": 1.25, "type": "leave"}],
}
TOP_BEACH = {  # pair 1c66446b (accepted): seen from above, the sand is the whole backdrop
    "kind": "image",
    "scene": {"background": "beach", "background_colour": "beige", "decorations": ["ripples in the sand"],
              "ground_visible": True, "lighting": "overcast", "mood": "quiet", "viewpoint": "top-down"},
    "objects": [{"id": "o1", "category": "bird", "colour": "pink", "size": "large", "position": "center"}],
}


@pytest.mark.parametrize("bad, good, g", [
    ("What the footage puts on view is a purple fish against a dense forest. From the first frames, the fish grows.",
     "A purple fish grows on dark green ground scattered with blades of grass.", TOP_DOWN_FOREST),
    # pair 68ccab86: "'The backdrop is a wooded forest' false as shown (grass surface, no trees)"
    ("Because the camera holds still, the backdrop of green blades of grass remains fixed. The backdrop is a "
     "wooded forest.",
     "Because the camera holds still, the backdrop of green blades of grass remains fixed.", TOP_DOWN_FOREST),
    ("In this video, a medium grey umbrella and a medium white heart are visible against an open beach.",
     "In this video, a grey umbrella and a white heart cross a grey sky above a strip of blue sea.", LOW_BEACH),
])
def test_a_backdrop_the_frames_do_not_show_is_not_named(bad, good, g):
    assert problems(bad, g) and any(p.startswith("setting:") for p in fact_problems(bad, g["kind"], g))
    assert problems(good, g) == [] and not any(p.startswith("setting:") for p in fact_problems(good, g["kind"], g))


def test_a_backdrop_shown_by_its_decoration_or_ground_may_be_named():
    assert problems("In this picture, a wooded forest is home to a black kite, a purple bird, and a purple "
                    "balloon.", LOW_FOREST) == []  # accepted by the reader: the pines are in view
    assert problems("The beach is sandy yellow and still,\nA patient stage, a quiet hill.", TOP_BEACH) == []
    assert name_shown(LOW_FOREST) and name_shown(TOP_BEACH)
    assert not name_shown(TOP_DOWN_FOREST) and not name_shown(LOW_BEACH)
    # a grounding that does not say what is drawn (no decorations field, as before the source read its
    # frames) decides nothing
    old = {**TOP_DOWN_FOREST, "scene": {k: v for k, v in TOP_DOWN_FOREST["scene"].items() if k != "decorations"}}
    assert name_shown(old) and problems("A fish in a dense forest.", old) == []


def test_check_pair_reports_it_as_fact_chosen():
    ins = "Provide a brief caption that accurately captures the key elements of this video."
    g = json.dumps(LOW_BEACH)
    bad = "In this video, a medium grey umbrella and a medium white heart are visible against an open beach."
    good = "In this video, a grey umbrella and a white heart cross a grey sky above a strip of blue sea."
    assert FACT in check_pair(ins, bad, "A heart.", False, modality="video", grounding=g, instruction_type="brief")
    assert FACT not in check_pair(ins, good, "A heart.", False, modality="video", grounding=g,
                                  instruction_type="brief")


def test_a_background_caption_names_what_is_shown_when_the_name_is_not():
    """The background contract (background_named) and this check agree: where "beach" may not be said, the
    sky, clouds and sea that are drawn name the backdrop. Pair 60ca6921's caption ("a sandy beach") fails the
    fact check; saying what the frames show meets both."""
    ins = "Please provide a detailed description of the background setting behind the heart in this video."
    good = "Behind the heart, a grey sky with white clouds hangs over a strip of blue sea."
    assert coverage_problems(good, "video", "background", ins, LOW_BEACH) == []
    assert problems(good, LOW_BEACH) == []
    assert coverage_problems("The light is flat and grey overhead.", "video", "background", ins, {
        **LOW_BEACH, "scene": {**LOW_BEACH["scene"], "background_colour": "light blue"}})
