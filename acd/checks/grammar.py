"""The grammar check: what a careful reader stops at in a caption, found without a language model.

Reason: `grammar_chosen` (check_pair reports it when the chosen caption has any problem); `problems()`
says what and where, for reports and tests. Patterns and word lists are data (schemas/checks.yaml
`grammar`); agreement uses `inflect` (a/an) and lemminflect (verb forms). Poems are checked line by line
and may have verbless lines; prose sentences need a finite verb.
"""
from __future__ import annotations

import re
from functools import lru_cache

from acd.checks.config import load_checks_spec
from acd.checks.length import is_poem_layout, split_sentences

GRAMMAR = "grammar_chosen"
_TOKEN = re.compile(r"[A-Za-z][A-Za-z'’\-]*")
_DOUBLED = re.compile(r"\b([A-Za-z]+)[ \t]+\1\b", re.IGNORECASE)
_ARTICLE_NEXT = re.compile(r"\b(a|an)\s+([A-Za-z][A-Za-z\-]*)", re.IGNORECASE)
_ARTICLE_PHRASE = re.compile(r"\b(a|an)\s+([A-Za-z][A-Za-z\-]*)(?:[ \t]+([A-Za-z][A-Za-z\-]*))?", re.IGNORECASE)


@lru_cache(maxsize=1)
def _spec():
    g = load_checks_spec()["grammar"]
    from lemminflect import getAllInflections

    # present (plural) and past forms; VBG/VBN alone ("a red ball resting there") make no sentence
    finite = set(g["auxiliaries"])
    for v in g["verbs"]:
        inf = getAllInflections(v, upos="VERB")
        for tag in ("VBZ", "VBD", "VBP"):
            finite.update(inf.get(tag, ()))
    return {
        "dangling": re.compile(g["dangling_article"], re.IGNORECASE),
        "broken": [re.compile(p, re.IGNORECASE) for p in g["broken_patterns"]],
        "doubled_ok": {w.lower() for w in g["doubled_ok"]},
        "plural_ok": {w.lower() for w in g["plural_ok"]},
        "audio_words": [w.lower() for w in g["audio_visual_words"]],
        "finite": {w.lower() for w in finite},
        "min_words": int(g["fragment_min_words"]),
    }


@lru_cache(maxsize=1)
def _inflect():
    import inflect

    return inflect.engine()


@lru_cache(maxsize=20000)
def _is_plural(word: str) -> bool:
    w = word.lower()
    if w in _spec()["plural_ok"] or not w.endswith("s") or w.endswith(("ss", "us", "is", "ous")):
        return False
    sing = _inflect().singular_noun(w)
    return bool(sing) and sing != w


@lru_cache(maxsize=20000)
def _article_for(word: str) -> str:
    return _inflect().a(word).split(" ", 1)[0].lower()


_PRONOUNS = {"i", "we", "you", "they", "who", "which", "that", "to"}


@lru_cache(maxsize=50000)
def _verb_kind(tok: str) -> str | None:
    """'finite' for a form that is a finite verb by itself (sits, sat, is), 'base' for a base form (sit)."""
    if tok in _spec()["finite"]:
        return "finite"
    from lemminflect import getAllLemmas, getInflection

    lemmas = getAllLemmas(tok)
    if not lemmas:  # not in the lexicon: an unknown -s/-ed word is most likely a verb ("meows")
        return "finite" if tok.endswith(("s", "ed")) and len(tok) > 3 else None
    verb = lemmas.get("VERB")
    if not verb:
        return None
    for lemma in verb:
        if lemma != tok and (tok.endswith("s") or tok in (getInflection(lemma, "VBD") or ())):
            return "finite"
    return "base" if tok in verb else None


def _has_verb(sentence: str) -> bool:
    toks = [t.lower() for t in _TOKEN.findall(sentence)]
    for i, t in enumerate(toks):
        kind = _verb_kind(t)
        if kind == "finite":
            return True
        if kind == "base" and i > 0 and (toks[i - 1] in _PRONOUNS or _is_plural(toks[i - 1])
                                         or toks[i - 1] in _spec()["finite"]):
            return True
    return False


@lru_cache(maxsize=50000)
def _pos(word: str) -> frozenset:
    from lemminflect import getAllLemmas

    return frozenset(getAllLemmas(word))


def _article_plural(text: str) -> list[str]:
    """'a beeps', 'a loud stars': an indefinite article whose noun is plural (at most one adjective between)."""
    out = []
    for m in _ARTICLE_PHRASE.finditer(text):
        w1, w2 = m.group(2), m.group(3)
        if _is_plural(w1):
            out.append(f"{m.group(1)} {w1}")
        elif w2 and _pos(w1.lower()) == {"ADJ"} and _is_plural(w2) and "VERB" not in _pos(w2.lower()):
            out.append(f"{m.group(1)} {w1} {w2}")
    return out


def problems(text: str, modality: str | None = None) -> list[str]:
    """Every grammar problem in `text`, as 'kind: excerpt' strings; [] when it reads cleanly."""
    sp = _spec()
    out: list[str] = []
    if not text or not text.strip():
        return out
    poem = is_poem_layout(text)
    for m in sp["dangling"].finditer(text):
        out.append(f"dangling_article: {m.group(0)!r}")
    for rx in sp["broken"]:
        for m in rx.finditer(text):
            out.append(f"broken_phrase: {m.group(0)!r}")
    for m in _DOUBLED.finditer(text):
        if m.group(1).lower() not in sp["doubled_ok"]:
            out.append(f"doubled_word: {m.group(0)!r}")
    for m in _ARTICLE_NEXT.finditer(text):
        art, word = m.group(1).lower(), m.group(2)
        if word.isupper() and len(word) > 1:
            continue  # acronyms: "a TV", "an LED" need the spoken form
        if _article_for(word) != art:
            out.append(f"article: {m.group(0)!r}")
    out += [f"article_plural: {x!r}" for x in _article_plural(text)]
    if modality == "audio":
        low = text.lower()
        for w in sp["audio_words"]:
            if re.search(r"\b" + re.escape(w) + r"\b", low):
                out.append(f"visual_words_in_audio: {w!r}")
    if not poem:
        for s in split_sentences(text):
            if len(_TOKEN.findall(s)) >= sp["min_words"] and not _has_verb(s):
                out.append(f"verbless: {s!r}")
    return out


def grammar_ok(text: str, modality: str | None = None) -> bool:
    return not problems(text, modality)
