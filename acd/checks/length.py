"""Length control: parse the release's constraint sentences and validate a caption against them.

Word and sentence counting are defined once here; the grounded backend writes to these counts and the
checks, the judge and AnyCapEval measure with them, so "passes its own constraint" means one thing.
"""
from __future__ import annotations

import re
from functools import lru_cache

from acd.taxonomy import LengthConstraint, load_taxonomy

# A word: letters/digits, joined by apostrophes or hyphens ("don't", "top-left"); a number with a decimal
# point or thousands separator ("0.2", "1,500") is one word, as a reader counts it.
_WORD = re.compile(r"[A-Za-z0-9\u00C0-\u024F]+(?:(?:['’\-]|(?<=\d)[.,](?=\d))[A-Za-z0-9\u00C0-\u024F]+)*")
# A sentence ends at . ! ? (or …) followed by whitespace/closing quotes or the end of the text.
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s|$)")


def count_words(text: str) -> int:
    return len(_WORD.findall(text or ""))


def split_sentences(text: str) -> list[str]:
    text = (text or "").strip()
    if not text:
        return []
    parts, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        chunk = text[start : m.end()].strip()
        if _WORD.search(chunk):
            parts.append(chunk)
        start = m.end()
    tail = text[start:].strip()
    if _WORD.search(tail):
        parts.append(tail)
    return parts


def count_sentences(text: str) -> int:
    return len(split_sentences(text))


def _compile(tpl: str) -> re.Pattern:
    rx = re.escape(tpl)
    for name in ("lo", "hi", "n"):
        rx = rx.replace(re.escape("{" + name + "}"), rf"(?P<{name}>\d+)")
    rx = rx.replace(re.escape("{count}"), r"(?P<count>[a-z]+|\d+)")
    rx = rx.replace(r"\ ", r"\s+")
    return re.compile(rx, re.IGNORECASE)


@lru_cache(maxsize=1)
def sentence_patterns() -> tuple[re.Pattern, ...]:
    """The release's length sentences (the taxonomy's template per form, any numbers) as patterns: what
    decontamination strips before comparing texts, since the release shares them with AnyCapEval."""
    return tuple(_compile(tpl) for tpl in load_taxonomy().length_templates.values())


@lru_cache(maxsize=1)
def _patterns() -> list[tuple[re.Pattern, str]]:
    """The taxonomy's template per form first (the release's main sentence), then every alias."""
    tax = load_taxonomy()
    out = list(zip(sentence_patterns(), tax.length_templates))
    for form, aliases in tax.length_aliases.items():
        out += [(_compile(a), form) for a in aliases]
    return out


def parse_constraint(text: str) -> LengthConstraint | None:
    """Find a length constraint in an instruction (or a `restriction` entry); None if absent.

    Every phrasing in schemas/taxonomy.yaml (template and aliases) is recognised, so the release's
    "...using more than 30 words." and ", all in three sentences." parse like its main sentence. Numbers
    outside the recipe's fixed set still parse (e.g. "exactly 35 words"), so real data is validated too.
    The returned constraint's `phrase` is the matched text (what a judge strips from the instruction).
    """
    if not text:
        return None
    numbers = load_taxonomy().number_words
    by_value = {v: k for k, v in numbers.items()}
    for rx, form in _patterns():
        for m in rx.finditer(text):
            g = m.groupdict()
            count = g.get("count")
            if count is not None:
                count = count.lower()
                if count.isdigit():
                    count = by_value.get(int(count))
                if count not in numbers:
                    continue
            return LengthConstraint(
                form=form,
                lo=int(g["lo"]) if g.get("lo") else None,
                hi=int(g["hi"]) if g.get("hi") else None,
                n=int(g["n"]) if g.get("n") else None,
                count=count,
                phrase=m.group(0),
            )
    return None


def is_poem_layout(text: str) -> bool:
    """Several non-empty lines: a poem (or list) that a reader may count by lines."""
    return sum(1 for ln in (text or "").splitlines() if _WORD.search(ln)) >= 2


def count_lines(text: str) -> int:
    return sum(1 for ln in (text or "").splitlines() if _WORD.search(ln))


def readings(text: str, constraint: LengthConstraint) -> dict[str, int]:
    """Every count a reader might take for this constraint: words; or sentences, plus lines for a poem.

    A poem under a sentence constraint is read both ways (readers count lines, the full stops say
    sentences); a caption passes only when both readings fit, so it is unambiguous.
    """
    if constraint.unit == "words":
        return {"words": count_words(text)}
    out = {"sentences": count_sentences(text)}
    if is_poem_layout(text):
        out["lines"] = count_lines(text)
    return out


def measure(text: str, constraint: LengthConstraint) -> int | None:
    if constraint.form == "none":
        return None
    return count_words(text) if constraint.unit == "words" else count_sentences(text)


def satisfies(text: str, constraint: LengthConstraint | None) -> bool:
    if constraint is None or constraint.form == "none":
        return True
    lo, hi = constraint.bounds()
    return all(lo <= v <= hi for v in readings(text, constraint).values())


def violation(text: str, constraint: LengthConstraint | None) -> str | None:
    """A readable reason when `text` breaks the constraint, naming the reading used, else None."""
    if satisfies(text, constraint):
        return None
    lo, hi = constraint.bounds()
    r = readings(text, constraint)
    wanted = f"{lo}..{hi}" if hi != float("inf") else f"more than {lo - 1}"
    if len(r) > 1:
        return (f"length: a poem read as {r['lines']} lines and {r['sentences']} sentences (both readings must "
                f"fit), wanted {wanted} {constraint.unit}")
    return f"length: {measure(text, constraint)} {constraint.unit}, wanted {wanted}"
