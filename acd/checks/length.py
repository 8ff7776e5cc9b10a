"""Length control: parse the release's constraint sentences and validate a caption against them.

Word and sentence counting are defined once here; the grounded backend writes to these counts and the
checks, the judge and AnyCapEval measure with them, so "passes its own constraint" means one thing.
"""
from __future__ import annotations

import re
from functools import lru_cache

from acd.taxonomy import LengthConstraint, load_taxonomy

_WORD = re.compile(r"[A-Za-z0-9\u00C0-\u024F]+(?:['’\-][A-Za-z0-9\u00C0-\u024F]+)*")
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


@lru_cache(maxsize=1)
def _patterns() -> list[tuple[re.Pattern, str]]:
    tax = load_taxonomy()
    out = []
    for form, tpl in tax.length_templates.items():
        rx = re.escape(tpl)
        for name in ("lo", "hi", "n"):
            rx = rx.replace(re.escape("{" + name + "}"), rf"(?P<{name}>\d+)")
        rx = rx.replace(re.escape("{count}"), r"(?P<count>[a-z]+)")
        out.append((re.compile(rx, re.IGNORECASE), form))
    return out


def parse_constraint(text: str) -> LengthConstraint | None:
    """Find the release's length sentence in an instruction (or a `restriction` entry); None if absent.

    Constraints outside the recipe's fixed set still parse (e.g. "exactly 35 words"), so real data with
    other numbers is validated too.
    """
    if not text:
        return None
    numbers = load_taxonomy().number_words
    for rx, form in _patterns():
        m = rx.search(text)
        if not m:
            continue
        g = m.groupdict()
        if g.get("count") is not None and g["count"].lower() not in numbers:
            continue
        return LengthConstraint(
            form=form,
            lo=int(g["lo"]) if g.get("lo") else None,
            hi=int(g["hi"]) if g.get("hi") else None,
            n=int(g["n"]) if g.get("n") else None,
            count=g["count"].lower() if g.get("count") else None,
        )
    return None


def measure(text: str, constraint: LengthConstraint) -> int | None:
    if constraint.form == "none":
        return None
    return count_words(text) if constraint.unit == "words" else count_sentences(text)


def satisfies(text: str, constraint: LengthConstraint | None) -> bool:
    if constraint is None or constraint.form == "none":
        return True
    lo, hi = constraint.bounds()
    value = measure(text, constraint)
    return lo <= value <= hi


def violation(text: str, constraint: LengthConstraint | None) -> str | None:
    """A readable reason when `text` breaks the constraint, else None."""
    if satisfies(text, constraint):
        return None
    lo, hi = constraint.bounds()
    return f"length: {measure(text, constraint)} {constraint.unit}, wanted {lo}..{hi}"
