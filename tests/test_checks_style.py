"""The style check (acd/checks/style.py, reason style_chosen): every pattern of schemas/checks.yaml `style`
fails its real example (a demo caption's sentence, or the issue's) and passes a natural sentence of the same
kind; the structural rules (closing line, restating, padding that depends on the instruction) likewise."""
from __future__ import annotations

import pytest

from acd.checks.config import load_checks_spec
from acd.checks.rules import check_pair
from acd.checks.style import STYLE, problems

SPEC = load_checks_spec()["style"]
DETAIL = "Provide a detailed and comprehensive description of the video content."


@pytest.mark.parametrize("entry", SPEC["stock"] + SPEC["padding"], ids=lambda e: e["name"])
def test_each_pattern_fails_its_real_example_and_passes_natural_text(entry):
    bad = problems(entry["example"], "image", DETAIL)
    assert any(p.split(":")[0].endswith(entry["name"]) for p in bad), (entry["example"], bad)
    assert problems(entry["natural"], "image", DETAIL) == [], problems(entry["natural"], "image", DETAIL)


def test_every_pattern_has_a_real_example_and_a_natural_one():
    for e in SPEC["stock"] + SPEC["padding"]:
        assert e["example"].strip() and e["natural"].strip() and e["example"] != e["natural"], e["name"]


@pytest.mark.parametrize("instruction, flagged", [
    (DETAIL, True),                                                     # time not asked: padding
    ("Describe when each object appears and leaves in the video.", False),  # time asked
    ("Describe the sound events in this audio in the order they occur.", False),
])
def test_duration_is_padding_only_where_time_was_not_asked(instruction, flagged):
    text = "A red car moves to the right. All of this plays out within about 2.5 seconds."
    assert any(p.startswith("padding_duration_only") for p in problems(text, "video", instruction)) is flagged


def test_count_is_padding_only_where_no_count_was_asked():
    text = "There are three objects altogether. A red ball sits at the left."
    assert problems(text, "image", "Generate a brief caption describing the main content of this image.")
    assert problems(text, "image", "How many objects are in the image, and what are they?") == []


# The issue's example ("The tale ends as quietly as it began … An open desert makes the background here.") and a
# demo narrative.
CLOSED = [
    "On this happy day, a desert sets the stage. A little apart, a medium-sized black ball has made a home toward "
    "the lower left. The tale ends as quietly as it began, in a desert. An open desert makes the background here.",
    "On this hushed day, a wide night sky sets the stage. A medium-sized red cup lingers at the centre, as if "
    "keeping watch. And so the night sky keeps its subdued little tale. Everything is shown under moonlight.",
    "On this happy day, a desert sets the stage. That is how the cheerful story of the desert draws to a close. "
    "Looking past the foreground, there are a bright, glaring sun and rolling sand dunes.",
]


@pytest.mark.parametrize("text", CLOSED)
def test_facts_after_a_narratives_closing_line_fail(text):
    out = problems(text, "image", "Generate a narrative description of the scene.", "narrative")
    assert any(p.startswith("after_closing") for p in out), out
    # the same closing line last is a proper ending
    ending = text[: text.index(next(s for s in text.split(". ") if "tale" in s or "story" in s))]
    closing_last = ending + next(s for s in text.split(". ") if "tale" in s or "story" in s).rstrip(".") + "."
    out = problems(closing_last, "image", "Generate a narrative description of the scene.", "narrative")
    assert not any(p.startswith("after_closing") for p in out), (closing_last, out)


def test_closing_rule_applies_to_narrative_poem_theme_only():
    text = CLOSED[0]
    assert not any(p.startswith("after_closing") for p in problems(text, "image", DETAIL, "detail"))
    # with no type, the instruction tells
    assert any(p.startswith("after_closing") for p in problems(text, "image", "Write a short story about this image."))


@pytest.mark.parametrize("bad, good, modality", [
    # demo audio detail: the count said again
    (SPEC["restate"]["example"], SPEC["restate"]["natural"], "audio"),
    # demo audio detail: loudness and pitch said again
    ("A strong, low-pitched clap is noticeable in the opening moments. One hears the clap as loud and low-pitched.",
     "A strong, low-pitched clap is noticeable in the opening moments. The clap makes two claps.", "audio"),
    # demo image appearance: the size said again
    ("Describing the ball: it is a large yellow ball that looks round and shiny. This yellow ball is large for "
     "this scene.",
     "Describing the ball: it is a large yellow ball that looks round and shiny. It sits on the right.", "image"),
    # the issue's backdrop said twice
    ("An indoor room showing a window set into the wall and a plank floor of wood extends behind everything. It "
     "seems hushed. A room spreads behind everything.",
     "An indoor room showing a window set into the wall extends behind everything. It seems hushed. A plank floor "
     "of wood spreads behind everything.", "image"),
    # demo narrative: the light said twice
    ("Our little tale is set in a night sky, under moonlight. The yellow house moves to the right. The lighting is "
     "soft moonlight everywhere.",
     "Our little tale is set in a night sky, under moonlight. The yellow house moves to the right. The sky shows "
     "stars dotted across it.", "video"),
])
def test_restating_fails_and_new_facts_pass(bad, good, modality):
    assert any(p.startswith("restated") for p in problems(bad, modality, DETAIL)), problems(bad, modality, DETAIL)
    assert not any(p.startswith("restated") for p in problems(good, modality, DETAIL)), problems(good, modality, DETAIL)


def test_a_definite_reference_is_no_restatement():
    # "the red ball" names the ball; the sentence states its place, a new fact
    text = "A small red ball rests on the left. The red ball is round and shiny."
    assert not any(p.startswith("restated") for p in problems(text, "image", DETAIL))


def test_style_code_comes_through_check_pair():
    ins = "Describe the appearance of the kite in the image."
    bad = "The kite is a medium diamond-shaped black kite in appearance. On the kite, there are features such as a tail."
    good = "The kite is a medium black diamond with a long tail."
    assert STYLE in check_pair(ins, bad, "A kite.", False, "none", None, modality="image", instruction_type="appearance")
    assert STYLE not in check_pair(ins, good, "A kite.", False, "none", None, modality="image",
                                   instruction_type="appearance")


def test_issue_examples_fail_verbatim():
    # the blind readers' own examples (issue 21, point 3)
    for text in ("Just after a break of 0.2 seconds does the horn come in.",
                 "In appearance, the umbrella is a red umbrella with a curved handle.",
                 "Light comes from bright daylight throughout.",
                 "On the kite, there are features such as a tail."):
        assert problems(text, "image", DETAIL), text


def test_grammar_catches_everything_with_a_plural_verb():
    # demo: "Everything rest in front of a dark night sky." (grammar_chosen, schemas/checks.yaml grammar)
    from acd.checks.grammar import problems as grammar_problems

    assert grammar_problems("A wide night sky extends behind. Everything rest in front of a dark night sky.")
    assert grammar_problems("A wide night sky extends behind. Everything rests in front of a dark night sky.") == []
