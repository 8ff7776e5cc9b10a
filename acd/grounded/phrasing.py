"""Phrasing as data: the grounded backend's YAML (prompts/grounded/*.yaml), loaded and precompiled once.

The revision is a hash of the files' bytes and of the writer's code (acd/grounded/*.py, then acd/lexicon.py:
the plurals, articles and number words it shares with the checks), so editing any phrasing or the writer
changes the backend's model_revision (and with it every cache key and provenance record that depends on it).
"""
from __future__ import annotations

import hashlib
import random
import re
import string
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from acd.paths import PROMPTS_DIR

PHRASING_DIR = PROMPTS_DIR / "grounded"
FILES = ("instructions.yaml", "captions.yaml", "styles.yaml")
_FMT = string.Formatter()


_ALT = re.compile(r"\[([^\[\]{}]*\|[^\[\]{}]*)\]")


class Tpl:
    """A str.format template plus the placeholders it needs (so ineligible ones are skipped cheaply).

    `[sits|rests|stands]` in a template is a choice of interchangeable words, drawn per rendering when
    a Random is given (the first otherwise): wording varies, the claim does not.
    """

    __slots__ = ("text", "fields", "alts")

    def __init__(self, text: str):
        if "[" in _ALT.sub("", text) or "]" in _ALT.sub("", text):  # e.g. a placeholder inside [a|b]
            raise ValueError(f"phrasing template has a malformed [a|b] choice: {text!r}")
        self.text = text
        self.fields = tuple(sorted({f for _, f, _, _ in _FMT.parse(_ALT.sub("", text)) if f}))
        self.alts = bool(_ALT.search(text))

    def ok(self, ctx: dict[str, Any]) -> bool:
        for f in self.fields:
            if not ctx.get(f):  # None and "" both mean "this item has no such fact"
                return False
        return True

    def render(self, ctx: dict[str, Any], rng: random.Random | None = None) -> str:
        text = self.text
        if self.alts:
            text = _ALT.sub(lambda m: (rng.choice(m.group(1).split("|")) if rng else m.group(1).split("|")[0]), text)
        return text.format_map(ctx)

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"Tpl({self.text!r})"


_PLAIN = re.compile(r"(\{[^}]*\}|\[[^\]]*\])|([A-Za-z]+)")
_KEEP_AFTER = {"a", "an"}  # "a whole" -> "a entire" would need another article
_KEEP_BEFORE = {"off", "like", "out", "up", "away", "of", "put"}  # phrasal verbs: "gives off" is not "lends off"


def with_synonyms(text: str, table: dict[str, list[str]]) -> str:
    """`text` with each plain word that has synonyms turned into a choice: 'shows' -> '[shows|displays]'.

    Placeholders and existing choices are left alone; a word after 'a'/'an' or before a particle keeps its
    form. The table (captions.yaml `synonyms`) lists words whose listed forms read the same in any
    template (same inflection, same claim)."""
    if not table:
        return text
    parts = list(_PLAIN.finditer(text))
    out, last = [], 0
    for k, m in enumerate(parts):
        out.append(text[last:m.start()])
        last = m.end()
        word = m.group(2)
        alts = table.get(word.lower()) if word else None
        prev = parts[k - 1].group(2) if k > 0 else None
        nxt = parts[k + 1].group(2) if k + 1 < len(parts) else None
        if (not alts or (prev and prev.lower() in _KEEP_AFTER) or (nxt and nxt.lower() in _KEEP_BEFORE)
                or "[" in text[max(0, m.start() - 1):m.start()]):
            out.append(m.group(0))
            continue
        forms = [word] + [a[:1].upper() + a[1:] if word[:1].isupper() else a for a in alts]
        out.append("[" + "|".join(forms) + "]")
    out.append(text[last:])
    return "".join(out)


def cap(text: str) -> str:
    """Capitalise the first letter (templates may start with a placeholder like {indef})."""
    return text[:1].upper() + text[1:] if text else text


def lower_first(text: str) -> str:
    """Lower-case the first letter unless the first word looks like an acronym ("TV")."""
    if len(text) > 1 and (text[1].islower() or text[1] == " "):
        return text[0].lower() + text[1:]
    return text


@dataclass(frozen=True)
class Phrasing:
    revision: str
    instructions: dict[str, Any]
    styles: dict[str, Any]
    lexicon: dict[str, Any]
    sentences: dict[str, tuple[Tpl, ...]]
    poem: dict[str, tuple[tuple[Tpl, Tpl], ...]]
    poem_connectives: dict[int, tuple[str, ...]]
    instruction_tpls: dict[tuple[str, str], tuple[Tpl, ...]]  # (type, modality) -> templates
    style_tpls: dict[str, dict[str, dict[str, tuple[Tpl, ...]]]]  # themes/viewpoints -> id -> part
    hallucination: dict[str, Any]
    weak_model: dict[str, Any]
    ignore_instruction: dict[str, Any]

    def pick(self, group: str, ctx: dict[str, Any], rng: random.Random, k: int = 1) -> list[str]:
        """Up to k distinct renderings of `group` that fit ctx, capitalised; [] when none fits."""
        return pick_from(self.sentences[group], ctx, rng, k)


def pick_from(tpls, ctx: dict[str, Any], rng: random.Random, k: int = 1, used: set | None = None) -> list[str]:
    """Up to k distinct eligible templates rendered with ctx, in random order.

    `used` (ids of templates already drawn for this caption) steers the draw to unused templates first,
    so a caption about three objects does not say "Look, there is ..." three times.
    """
    ok = [t for t in tpls if t.ok(ctx)]
    if not ok:
        return []
    if used is not None:
        fresh = [t for t in ok if id(t) not in used]
        stale = [t for t in ok if id(t) in used]
        chosen = rng.sample(fresh, min(k, len(fresh)))
        if len(chosen) < k and stale:
            chosen += rng.sample(stale, min(k - len(chosen), len(stale)))
        used.update(id(t) for t in chosen)  # any of them may be the one the fitter keeps
    else:
        chosen = rng.sample(ok, min(k, len(ok)))
    return [cap(t.render(ctx, rng)) for t in chosen]


def _revision(directory: Path) -> str:
    h = hashlib.sha256()
    for name in FILES:
        h.update(name.encode())
        h.update((directory / name).read_bytes())
    # the writer's code decides which facts a caption carries and how long it is: a code change is a new
    # model too (cached captions of the old code must not be served)
    for src in sorted(Path(__file__).parent.glob("*.py")) + [Path(__file__).parent.parent / "lexicon.py"]:
        h.update(src.name.encode())
        h.update(src.read_bytes())
    return h.hexdigest()[:16]


def current_revision(directory: str | Path | None = None) -> str:
    """The revision the files and code on disk have now (load_phrasing's is the one this process loaded)."""
    return _revision(Path(directory) if directory else PHRASING_DIR)


@lru_cache(maxsize=4)
def load_phrasing(directory: str | Path | None = None) -> Phrasing:
    d = Path(directory) if directory else PHRASING_DIR
    ins = yaml.safe_load((d / "instructions.yaml").read_text())
    cap_ = yaml.safe_load((d / "captions.yaml").read_text())
    sty = yaml.safe_load((d / "styles.yaml").read_text())
    instruction_tpls: dict[tuple[str, str], tuple[Tpl, ...]] = {}
    for itype, per in ins["types"].items():
        for modality in ("image", "video", "audio"):
            texts = list(per.get("any", [])) + list(per.get(modality, []))
            instruction_tpls[(itype, modality)] = tuple(Tpl(t) for t in texts)
    syn = cap_.get("synonyms") or {}
    style_tpls = {
        kind: {sid: {part: tuple(Tpl(t if part == "phrases" else with_synonyms(t, syn)) for t in spec.get(part, []))
                     for part in ("phrases", "open", "object", "close")}
               for sid, spec in sty[kind].items()}
        for kind in ("themes", "viewpoints")
    }
    from acd.checks.length import count_words

    for key in ("poem_connectives",):  # the fitter adds a link's key as its length
        for n, words in cap_[key].items():
            bad = [w for w in words if count_words(w) != int(n)]
            if bad:
                raise ValueError(f"captions.yaml {key}[{n}]: {bad} do not have {n} words")
    return Phrasing(
        revision=_revision(d),
        instructions=ins,
        styles=sty,
        lexicon=cap_["lexicon"],
        sentences={g: tuple(Tpl(with_synonyms(t, syn)) for t in ts) for g, ts in cap_["sentences"].items()},
        poem={g: tuple((Tpl(a), Tpl(b)) for a, b in cs) for g, cs in cap_["poem"].items()},
        poem_connectives={int(k): tuple(v) for k, v in cap_["poem_connectives"].items()},
        instruction_tpls=instruction_tpls,
        style_tpls=style_tpls,
        hallucination=cap_["hallucination"],
        weak_model=cap_["weak_model"],
        ignore_instruction=cap_["ignore_instruction"],
    )
