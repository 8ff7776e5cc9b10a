"""Captions a reader would accept, and checks that catch what a reader catches (issue 14).

Length phrasings of the release, decimals, poems under sentence constraints, the grammar check, the fact
check (swaps injected into real grounded captions), and the grounded writer on synthetic scenes: no
broken pattern, nothing false, rejected captions worse in exactly their recorded way.
"""
from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from acd.backends import GenRequest, make_backend
from acd.checks.factcheck import problems as fact_problems
from acd.checks.grammar import problems as grammar_problems
from acd.checks.length import count_words, parse_constraint, readings, satisfies, violation
from acd.grounded.phrasing import load_phrasing
from acd.paths import REFERENCE_DIR
from acd.synth import vocab
from acd.synth.image import render_image
from acd.taxonomy import LengthConstraint, load_taxonomy

TAX = load_taxonomy()


# ------------------------------------------------------------------------------------------ length
def _release_instructions():
    """Every instruction text of the reference slice: AnyCapEval items and ACD training records."""
    for f in sorted(REFERENCE_DIR.rglob("*.jsonl")):
        for line in f.read_text().splitlines():
            d = json.loads(line)
            conv = d.get("conversations") or []
            if not conv:
                continue
            q = conv[0]["value"]
            m = re.search(r"The requirement is: '(.*?)'\s*\.?\s*The existing caption", q, re.S)
            yield f, (m.group(1) if m else q), d.get("restriction") or []


# What a reader takes for a length constraint in the release's wording: a number (or number word) of words
# or sentences after a quantifier, or the release's own sentence prefix.
_LENGTHY = re.compile(
    r"(?:length needs to be|cannot exceed|no more than|more than|fewer than|at most|at least|exactly|using|all in|"
    r"\bin)\s+(?:\d+|one|two|three|four|five|six|seven|eight|nine|ten|a single)(?:\s+to\s+\d+)?\s+(?:words?|sentences?)\b",
    re.IGNORECASE)


def test_every_release_length_phrasing_parses():
    if not REFERENCE_DIR.exists():
        pytest.skip(f"reference AnyCap slice not found under {REFERENCE_DIR} (set ACD_REFERENCE)")
    seen, unparsed, forms = 0, [], set()
    for f, q, restriction in _release_instructions():
        texts = [q] + [r for r in restriction if isinstance(r, str) and "length" in r.lower()]
        for t in texts:
            if not _LENGTHY.search(t):
                continue
            seen += 1
            c = parse_constraint(t)
            if c is None:
                unparsed.append((f.name, t[-120:]))
            else:
                forms.add(c.form)
    assert seen > 1000, seen
    assert not unparsed, unparsed[:5]
    assert {"word_range", "word_exact", "word_max", "word_min", "sentence_one", "sentence_exact", "sentence_max"} <= forms


@pytest.mark.parametrize("text,key", [
    ("Create a detailed and vivid caption that thoroughly explains the elements of this audiousing more than 30 words.",
     "word_min:30"),
    ("Write a descriptive narrative explaining the details and context of this audio, in no more than three sentences.",
     "sentence_max:three"),
    ("Describe the events in this audio, all in three sentences.", "sentence_exact:three"),
    ("Describe the scene in five sentences.", "sentence_exact:five"),
    ("Describe the scene using exactly 25 words.", "word_exact:25"),
    ("The generated caption's length cannot exceed two sentences.", "sentence_max:two"),
    ("The generated caption's length needs to be 10 to 20 words.", "word_range:10:20"),
])
def test_length_aliases(text, key):
    c = parse_constraint(text)
    assert c is not None and c.key == key
    assert c.phrase and c.phrase in text  # what the judge strips from the instruction


def test_open_lower_bound():
    c = LengthConstraint.from_key("word_min:30")
    assert c.sentence() == "The generated caption's length needs to be more than 30 words."
    assert parse_constraint(c.sentence()) == c
    assert not satisfies(" ".join(["cat"] * 30), c) and satisfies(" ".join(["cat"] * 31), c)
    assert satisfies(" ".join(["cat"] * 500), c)
    lo, hi = c.target_bounds()
    assert lo == 31 and hi < 1000


def test_decimals_and_numbers_are_one_word():
    assert count_words("The bell rings at 0.2 seconds.") == 6
    assert count_words("About 1,500 people, 3.75 km away.") == 6
    assert count_words("It ends. 2 seconds later") == 5
    c = LengthConstraint.from_key("word_exact:10")
    assert satisfies("At 1.4 seconds, the car runs into the red ball.", c)


def test_poem_read_as_lines_and_sentences():
    two = LengthConstraint.from_key("sentence_max:two")
    four_lines = "A red ball rests in the sun,\nIts day has just begun.\nA blue box sits near,\nIts edges sharp and clear."
    assert readings(four_lines, two) == {"sentences": 2, "lines": 4}
    assert not satisfies(four_lines, two)
    why = violation(four_lines, two)
    assert "4 lines" in why and "2 sentences" in why and "both readings" in why
    ok = "A red ball rests in the sun, its day has just begun.\nA blue box sits near, its edges sharp and clear."
    assert readings(ok, two) == {"sentences": 2, "lines": 2} and satisfies(ok, two)
    assert readings("One line. Two sentences.", two) == {"sentences": 2}  # prose: sentences only


# ------------------------------------------------------------------------------------------ grammar
@pytest.mark.parametrize("text,modality,kind", [
    ("Here, the car is a small purple car. The car has a with two wheels showing and with windows quality.", "image", "dangling_article"),
    ("The kite has a diamond-shaped and with a tail quality.", "image", "broken_phrase"),
    ("A fish sits in the center, looking with a forked tail.", "image", "broken_phrase"),
    ("The clip contains a chirp and a beeps, with near silence in the background.", "audio", "article_plural"),
    ("In this view, a bell rings twice near the start.", "audio", "visual_words_in_audio"),
    ("Then a loud bell joins in in the middle of the clip.", "audio", "doubled_word"),
    ("A small red ball against a green meadow.", "image", "verbless"),
    ("An red ball rests in the corner.", "image", "article"),
])
def test_grammar_catches_broken_patterns(text, modality, kind):
    assert any(p.startswith(kind) for p in grammar_problems(text, modality)), grammar_problems(text, modality)


@pytest.mark.parametrize("text,modality", [
    ("A small red ball rests in the top left corner, and an orange cat sleeps beside it.", "image"),
    ("Two stars shine above a series of beeps.", "audio"),
    ("Here a large black bird holds its place,\nIn the top left corner, in its own quiet space.", "image"),
    ("The bell starts at 0.2 seconds. The drum stops about 1.1 seconds in.", "audio"),
])
def test_grammar_passes_clean_text(text, modality):
    assert grammar_problems(text, modality) == []


def test_grammar_on_official_captions_is_quiet():
    """The check is for what a reader stops at: the release's own captions rarely trip it."""
    if not REFERENCE_DIR.exists():
        pytest.skip(f"reference AnyCap slice not found under {REFERENCE_DIR} (set ACD_REFERENCE)")
    texts = []
    for f in sorted(REFERENCE_DIR.rglob("*.jsonl")):
        for line in f.read_text().splitlines():
            conv = json.loads(line).get("conversations") or []
            if len(conv) >= 2:
                texts.append((f, conv[1]["value"]))
    flagged = sum(1 for f, t in texts if grammar_problems(t, next(m for m in ("image", "video", "audio") if m in f.parts)))
    print(f"official captions flagged by the grammar check: {flagged}/{len(texts)}")
    assert flagged / len(texts) < 0.06


# ------------------------------------------------------------------------------------------ grounded captions
@pytest.fixture(scope="module")
def generated():
    """Chosen and rejected captions of every image type for 30 synthetic images (real groundings)."""
    backend = make_backend({"name": "grounded"})
    rows = []
    constraints = [c for c in TAX.constraints]
    for i in range(30):
        _, g, _ = render_image(11, i)
        media = {"media_key": f"img-{i}", "modality": "image", "grounding": json.dumps(g)}
        for j, itype in enumerate(TAX.modalities["image"]):
            lc = constraints[(i + j) % len(constraints)]
            pair = {"pair_id": f"q{i}-{itype}", "seed": 3, "modality": "image", "instruction_type": itype,
                    "control": TAX.types[itype].control, "length_key": lc.key, "length_constraint": lc.sentence()}

            def run(role, p):
                r = backend.generate([GenRequest("x", role, p, media)])[0]
                assert r.status == "ok", r.error
                return r.text

            pair["instruction"] = run("instruct", pair)
            pair["chosen"] = run("chosen", pair)
            for strategy in ("hallucination", "weak_model", "ignore_instruction", "length_violation"):
                pair[strategy] = run("rejected", dict(pair, rejection_strategy=strategy, is_qcc=False))
            rows.append((g, lc, pair))
    return rows


def test_grounded_chosen_grammatical_and_true(generated):
    bad_g = [(p["instruction_type"], p["chosen"]) for g, lc, p in generated if grammar_problems(p["chosen"], "image")]
    bad_f = [(p["instruction_type"], p["chosen"], fact_problems(p["chosen"], "image", g, p["instruction"]))
             for g, lc, p in generated if fact_problems(p["chosen"], "image", g, p["instruction"])]
    assert not bad_g, bad_g[:3]
    assert not bad_f, bad_f[:3]
    assert not any(re.search(r"\b(?:In this view|At a glance|Put simply|In short|Clearly),", p["chosen"])
                   for *_, p in generated)  # no padding openers


def test_rejected_worse_in_their_recorded_way(generated):
    """hallucination and weak_model state something false (the fact check sees it); length_violation breaks
    the length constraint; ignore_instruction stays true (it is another type's caption, not a false one)."""
    n = len(generated)
    hall = sum(bool(fact_problems(p["hallucination"], "image", g, p["instruction"])) for g, lc, p in generated)
    weak = sum(bool(fact_problems(p["weak_model"], "image", g, p["instruction"])) for g, lc, p in generated)
    ign = sum(bool(fact_problems(p["ignore_instruction"], "image", g, p["instruction"])) for g, lc, p in generated)
    lv = [(lc, p["length_violation"]) for g, lc, p in generated if lc.form != "none"]
    assert hall / n >= 0.97, hall
    assert weak / n >= 0.95, weak
    assert ign / n <= 0.03, ign
    assert all(not satisfies(t, lc) for lc, t in lv), [(lc.key, t) for lc, t in lv if satisfies(t, lc)][:2]


def _swaps(text: str, g: dict, rng: random.Random):
    """(kind, corrupted text) swaps a careless captioner makes, each changing one checkable fact."""
    v = vocab()
    lex = load_phrasing().lexicon
    low = text
    objs = g["objects"]
    out = []
    for o in objs:
        c, cat = o["colour"], o["category"]
        m = re.search(rf"\b{c}\b(?=[ \w-]*?\b{cat})", low)
        if m:
            new = rng.choice([x for x in v["colours"] if x != c])
            out.append(("colour", low[:m.start()] + new + low[m.end():]))
        m = re.search(rf"\b{cat}\b", low)
        if m:
            new = rng.choice([x for x in v["categories"] if x not in {q["category"] for q in objs}])
            out.append(("object", low[:m.start()] + new + low[m.end():]))
    cats = {}
    for o in objs:
        cats[o["category"]] = cats.get(o["category"], 0) + 1
    nums = lex["numbers"]
    plurals = "|".join(["objects"] + [c + "s" for c in v["categories"]] + ["boxes"])
    m = re.search(r"\b(" + "|".join(nums[1:6]) + r")\b(?= (?:\w+ ){0,2}(?:" + plurals + r")\b)", low, re.IGNORECASE)
    if m:
        new = rng.choice([x for x in nums[2:7] if x != m.group(1)])
        out.append(("count", low[:m.start()] + new + low[m.end():]))
    else:  # "a small red ball" -> "two small red balls"
        from acd.lexicon import plural

        m = re.search(r"\b([Aa]n?) ((?:[a-z-]+ ){0,2})(" + "|".join(cats) + r")\b", low)
        if m and cats[m.group(3)] == 1:
            bad = f"{'Two' if m.group(1)[0] == 'A' else 'two'} {m.group(2)}{plural(m.group(3))}"
            out.append(("count", low[:m.start()] + bad + low[m.end():]))
    phrases = {p: pos for pos, p in lex["where"].items()}
    for pos, alts in lex["where_alt"].items():
        for p in alts:
            phrases[p] = pos
    for p, pos in sorted(phrases.items(), key=lambda kv: -len(kv[0])):
        i = low.find(p)
        if i >= 0:
            others = [q for q, qp in phrases.items() if qp != pos and qp not in {o["position"] for o in objs}]
            if others:
                out.append(("position", low[:i] + rng.choice(others) + low[i + len(p):]))
            break
    return out


def test_fact_check_catches_injected_swaps(generated):
    rng = random.Random(5)
    caught, total, missed = {}, {}, []
    for g, lc, p in generated:
        if p["instruction_type"] == "poem":
            continue
        for kind, bad in _swaps(p["chosen"], g, rng):
            if bad == p["chosen"]:
                continue
            total[kind] = total.get(kind, 0) + 1
            if fact_problems(bad, "image", g, p["instruction"]):
                caught[kind] = caught.get(kind, 0) + 1
            else:
                missed.append((kind, bad))
    rate = sum(caught.values()) / sum(total.values())
    print({k: f"{caught.get(k, 0)}/{n}" for k, n in total.items()}, f"overall {rate:.3f}")
    assert set(total) == {"colour", "object", "count", "position"}, total
    assert all(n >= 10 for n in total.values()), total
    assert rate >= 0.95, missed[:5]


# ------------------------------------------------------------------------------------------ taxonomy
def test_taxonomy_perspective_is_content_and_video_release_names():
    assert TAX.types["perspective"].control == "content"
    assert TAX.types["appearance"].release_name_for("video") == "appearance"
    assert TAX.types["position"].release_name_for("video") == "position"
    assert TAX.types["appearance"].release_name_for("image") == "multi_class_appearance"
    from acd.taxonomy import taxonomy_type

    assert taxonomy_type("appearance") == "appearance" and taxonomy_type("multi_class_position") == "position"
