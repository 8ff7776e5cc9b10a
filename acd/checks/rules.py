"""Deterministic per-pair checks. Each returns reason codes (short strings) for what is wrong.

Reason codes (stable: review, reports and regeneration key on them):
  empty_instruction, empty_chosen, empty_rejected
  refusal_chosen, refusal_rejected
  leak_instruction, leak_chosen, leak_rejected
  length_chosen            chosen breaks its length constraint
  length_sentence_missing  the pair has a length constraint the instruction does not state
  length_unparsed          length_constraint is set but is not a known sentence form
  chosen_equals_rejected   a q-a-c pair whose rejected is the chosen (after case/space normalisation)
  qcc_rejected_differs     a q-c-c pair whose rejected is not the chosen
  grammar_chosen           chosen has a broken pattern a reader stops at (acd/checks/grammar.py)
  fact_chosen              chosen states something its media's grounding contradicts (acd/checks/factcheck.py;
                           only when the media has a grounding; for video also motion truth: a moving object's
                           place with its moment, no end place for an object that leaves; acd/checks/motion.py)
  reference_chosen         chosen opens a sentence with "It"/"Its" that does not point at the one thing named
                           just before (ambiguous, or its facts fit another object; acd/checks/reference.py)
  style_chosen             chosen has template prose a reader rejects: stock filler, padding, restating, facts
                           after a narrative's closing line (acd/checks/style.py; patterns in checks.yaml `style`)
  coverage_chosen          chosen leaves out what its instruction type must state, or names what an instance
                           instruction excludes (acd/checks/coverage.py; contracts in schemas/contracts.yaml)
  rejected_not_worse       a non-q-c-c rejected caption not worse in the way its rejection_strategy records:
                           hallucination with no new false fact, ignore_instruction with no new contract miss,
                           length_violation within the length, weak_model with neither a new false fact nor
                           fewer grounded facts (acd/checks/rejected.py); skipped without a strategy
  eval_text_overlap        the instruction, chosen or rejected shares a normalised n-gram with an evaluation
                           text (recipe.decontaminate; acd/checks/decontam.py); only when an index is passed
The rejected caption is never length-checked: breaking the constraint is one of its jobs.
Everything here is plain Python over strings with precompiled regexes and caches (no per-row setup). The
style and reference checks cost about 0.3 ms a pair (some 90 s of CPU over a 300k-pair build, spread over the
lots' workers); the rest, seconds.
"""
from __future__ import annotations

from functools import lru_cache

from acd.checks.config import CONTENT_CHECKS as ALL_CONTENT, compiled_patterns
from acd.checks.length import parse_constraint, satisfies
from acd.taxonomy import LengthConstraint

EMPTY = "empty_{}"
REFUSAL = "refusal_{}"
LEAK = "leak_{}"


def normalize(text: str | None) -> str:
    """Case- and whitespace-insensitive form used for equality checks."""
    return " ".join((text or "").split()).casefold()


def is_empty(text: str | None) -> bool:
    return text is None or not text.strip()


def is_refusal(text: str | None) -> bool:
    refusal, _, _, window = compiled_patterns()
    return bool(text) and refusal.search(text[:window]) is not None


def has_leak(text: str | None, role: str = "caption") -> bool:
    """role: "caption" or "instruction" (instructions may carry the release's {object} braces)."""
    _, caption_leak, instruction_leak, _ = compiled_patterns()
    rx = instruction_leak if role == "instruction" else caption_leak
    return bool(text) and rx.search(text) is not None


@lru_cache(maxsize=256)
def resolve_constraint(length_constraint: str | None, length_key: str | None) -> LengthConstraint | None:
    """The pair's constraint: parsed from its sentence when set, else from its taxonomy key.

    Raises ValueError when a sentence is set but does not parse (the caller reports length_unparsed).
    Cached: a build has a dozen distinct constraints and 300k rows.
    """
    if length_constraint:
        c = parse_constraint(length_constraint)
        if c is None:
            raise ValueError(f"unparsed length constraint {length_constraint!r}")
        return c
    if length_key and length_key != "none":
        try:
            return LengthConstraint.from_key(length_key)
        except KeyError:
            # Keys outside the recipe's set (e.g. word_exact:35) still describe a constraint.
            form, *vals = length_key.split(":")
            return _constraint_from_parts(form, vals)
    return None


def _constraint_from_parts(form: str, vals: list[str]) -> LengthConstraint:
    if form == "word_range":
        return LengthConstraint(form=form, lo=int(vals[0]), hi=int(vals[1]))
    if form in ("word_exact", "word_max", "word_min"):
        return LengthConstraint(form=form, n=int(vals[0]))
    if form in ("sentence_exact", "sentence_max"):
        return LengthConstraint(form=form, count=vals[0])
    return LengthConstraint(form=form)


def _states_sentence(instruction: str, sentence: str) -> bool:
    return sentence in instruction or normalize(sentence) in normalize(instruction)


def text_flags(instruction: str | None, chosen: str | None, rejected: str | None) -> tuple[bool, ...]:
    """(refusal_chosen, refusal_rejected, leak_instruction, leak_chosen, leak_rejected), Python re.

    check_lot computes the same five flags for a whole column at once with RE2 (vectorised_text_flags);
    tests hold the two to the same answers.
    """
    refusal, caption_leak, instruction_leak, window = compiled_patterns()
    return (
        bool(chosen) and refusal.search(chosen[:window]) is not None,
        bool(rejected) and refusal.search(rejected[:window]) is not None,
        bool(instruction) and instruction_leak.search(instruction) is not None,
        bool(chosen) and caption_leak.search(chosen) is not None,
        bool(rejected) and caption_leak.search(rejected) is not None,
    )


def vectorised_text_flags(instruction, chosen, rejected) -> list[list[bool]]:
    """text_flags for whole pyarrow string arrays (RE2, C++): the slow part of the rules, 10x faster."""
    import pyarrow.compute as pc

    from acd.checks.config import pattern_sources

    refusal, caption_leak, instruction_leak, window = pattern_sources()

    def match(arr, pattern):
        return pc.fill_null(pc.match_substring_regex(arr, pattern, ignore_case=True), False).to_pylist()

    return [
        match(pc.utf8_slice_codeunits(chosen, 0, window), refusal),
        match(pc.utf8_slice_codeunits(rejected, 0, window), refusal),
        match(instruction, instruction_leak),
        match(chosen, caption_leak),
        match(rejected, caption_leak),
    ]


_FLAG_CODES = ("refusal_chosen", "refusal_rejected", "leak_instruction", "leak_chosen", "leak_rejected")


def check_pair(*args, **kwargs) -> list[str]:
    """All deterministic reason codes for one pair; [] when it is clean (see _check_pair).

    Remembered for the last few thousand pairs: a model backend's generate stage checks each pair the moment
    it is written (to ask again at once, see acd.generate._chain) and then again with its lot, with the same
    arguments; the second time costs a lookup instead of the grammar and fact checks."""
    try:
        return list(_check_pair_memo(*args, **kwargs))
    except TypeError:  # an unhashable argument (a grounding given as a dict)
        return _check_pair(*args, **kwargs)


@lru_cache(maxsize=8192)
def _check_pair_memo(*args, **kwargs) -> tuple[str, ...]:
    return tuple(_check_pair(*args, **kwargs))


def chosen_problems(instruction: str | None, chosen: str, modality: str | None, grounding: str | dict | None,
                    instruction_type: str | None, content: tuple[str, ...] = ALL_CONTENT) -> list[str]:
    """The reason codes of what the chosen caption itself says (grammar, facts, references, style, coverage).

    One list for the check stage and the grounded writer, which draws a caption again while this is not empty,
    so what the writer ships and what the checks accept cannot drift apart."""
    from acd.checks.coverage import COVERAGE, problems as coverage_problems
    from acd.checks.grammar import GRAMMAR, problems as grammar_problems
    from acd.checks.reference import REFERENCE, problems as reference_problems
    from acd.checks.style import STYLE, problems as style_problems

    out = []
    if "grammar" in content and grammar_problems(chosen, modality):
        out.append(GRAMMAR)
    if grounding and "facts" in content:
        from acd.checks.factcheck import FACT, problems as fact_problems

        if fact_problems(chosen, modality or "image", grounding, instruction):
            out.append(FACT)
    if "reference" in content and reference_problems(chosen, modality, grounding):
        out.append(REFERENCE)
    if "style" in content and style_problems(chosen, modality, instruction, instruction_type, grounding):
        out.append(STYLE)
    if "coverage" in content and coverage_problems(chosen, modality, instruction_type, instruction, grounding):
        out.append(COVERAGE)
    return out


def _check_pair(
    instruction: str | None,
    chosen: str | None,
    rejected: str | None,
    is_qcc: bool,
    length_key: str | None = "none",
    length_constraint: str | None = None,
    flags: tuple[bool, ...] | None = None,
    modality: str | None = None,
    grounding: str | dict | None = None,
    instruction_type: str | None = None,
    rejection_strategy: str | None = None,
    content: tuple[str, ...] = ALL_CONTENT,
    decontam=None,
) -> list[str]:
    """All deterministic reason codes for one pair; [] when it is clean. Order is fixed.

    flags: precomputed text_flags (check_lot passes the vectorised ones); computed here when None.
    decontam: the evaluation texts' n-gram index (acd.checks.decontam.TextIndex), or None (no check).
    """
    out: list[str] = []
    for role, text in (("instruction", instruction), ("chosen", chosen), ("rejected", rejected)):
        if text is None or not text.strip():
            out.append(EMPTY.format(role))
    if flags is None:
        flags = text_flags(instruction, chosen, rejected)
    # refusals first, then leaks (the documented order)
    out.extend(code for code, hit in zip(_FLAG_CODES, flags) if hit)

    try:
        constraint = resolve_constraint(length_constraint or None, length_key)
    except ValueError:
        out.append("length_unparsed")
        constraint = None
    if constraint is not None and chosen and chosen.strip() and not satisfies(chosen, constraint):
        out.append("length_chosen")
    if length_constraint and instruction and not _states_sentence(instruction, length_constraint):
        out.append("length_sentence_missing")
    if chosen and chosen.strip():
        out.extend(chosen_problems(instruction, chosen, modality, grounding, instruction_type, content))

    if chosen is not None and rejected is not None:
        same = chosen == rejected or normalize(chosen) == normalize(rejected)
        if is_qcc and not same:
            out.append("qcc_rejected_differs")
        elif not is_qcc and same and chosen.strip():
            out.append("chosen_equals_rejected")
        elif not is_qcc and rejection_strategy and "rejected" in content:  # worse in its recorded way (acd/checks/rejected.py)
            from acd.checks.rejected import REJECTED, not_worse

            if not_worse(instruction, chosen, rejected, modality=modality, instruction_type=instruction_type,
                         rejection_strategy=rejection_strategy, constraint=constraint, grounding=grounding):
                out.append(REJECTED)
    if decontam is not None:
        from acd.checks.decontam import EVAL_TEXT_OVERLAP

        texts = (instruction, chosen) if is_qcc and rejected == chosen else (instruction, chosen, rejected)
        if any(decontam.overlap(t) for t in texts):
            out.append(EVAL_TEXT_OVERLAP)
    return out
