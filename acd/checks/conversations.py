"""Pairs from InternVL conversation files: the official AnyCap release's ACD training data, or our acm/ export.

Each jsonl line is {"id", "<modality>": file, "conversations": [human, gpt], ...}. In the aligner kinds the
human turn wraps the instruction q and an existing caption a in the release's prompt ("The requirement is:
'q'. The existing caption is: 'a'. You only need ..."); the gpt turn is the chosen caption c. This module
turns such files into the pair columns `acd check` reads (pair_id, modality, instruction, chosen, rejected,
instruction_type, is_qcc, rejection_strategy), so the official captions go through the very checks ours do.

Kind, from the folder names the release and acm/ use:
  q-a-c, q_c_a, q_c_a_org  a is a deliberately worse caption (how it was made is not recorded)
  q-8b-c                   a comes from a weaker model (InternVL2.5-8B): rejection_strategy weak_model
  q-c-c                    a is meant to equal c (is_qcc): rejection_strategy identical
  gpt_q_c                  plain instruction -> caption rows: no rejected caption, so no pair (counted, skipped)
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from acd.taxonomy import MODALITIES, load_taxonomy, taxonomy_type

# The release's prompt in its variants (quoted or not, "'.The" or "'. The", with or without the closing
# sentence, audio q_c_a_org repeating the "<audio>" tag inside the requirement). Anchored on the two fixed
# phrases, not on the quotes: captions contain apostrophes.
_ALIGNER = re.compile(r"The requirement is:\s*(?P<q>.*?)\s*The existing caption is:\s*(?P<a>.*?)\s*"
                      r"(?:You only need to answer.*)?$", re.S)
_MEDIA_TAG = re.compile(r"^\s*(?:<(?:image|video|audio)>\s*)+")

KIND_DIRS = {"q-a-c": "q-a-c", "q_c_a": "q-a-c", "q_c_a_org": "q-a-c", "q-8b-c": "q-8b-c", "q-c-c": "q-c-c",
             "gpt_q_c": "q-c"}
STRATEGY = {"q-a-c": None, "q-8b-c": "weak_model", "q-c-c": "identical"}


def _unwrap(text: str) -> str:
    """The text inside the prompt's quotes: "'x'." -> "x", "'x'" -> "x"; the unquoted video q-a-c form
    doubles the full stop ("...video..") and loses one here."""
    s = text.strip()
    if s.startswith("'") and s.endswith("'."):
        return s[1:-2].strip()
    if len(s) >= 2 and s.startswith("'") and s.endswith("'"):
        return s[1:-1].strip()
    return s[:-1] if s.endswith("..") else s


def split_human_turn(human: str) -> tuple[str, str | None]:
    """(instruction q, existing caption a) of an aligner prompt; (instruction, None) for a plain request."""
    m = _ALIGNER.search(human)
    if not m:
        return _MEDIA_TAG.sub("", human).strip(), None
    return _unwrap(_MEDIA_TAG.sub("", m["q"])), _unwrap(m["a"])


def _kind(rel: Path) -> str | None:
    for part in rel.parts[:-1]:
        if part in KIND_DIRS:
            return KIND_DIRS[part]
    return None


def _type_names() -> list[tuple[str, str]]:
    """(name as it appears in a release file name, taxonomy type), longest first: "multi_class_position"
    must win over "position" only where both could match, and "instance_description" names instance."""
    tax = load_taxonomy()
    out = set()
    for name, t in tax.types.items():
        out.add((name, name))
        for n in [t.release_name, *(t.release_names or {}).values()]:
            if n:
                out.add((n.lower(), name))
    return sorted(out, key=lambda x: (-len(x[0]), x[0]))


def instruction_type_of(rel: Path, record: dict) -> str | None:
    """The record's `restriction[0]` when it has one, else the type its file name names (the release's
    image files say brief, detail, Processed_poem, instance_description, multi_class_appearance ...)."""
    r = record.get("restriction") or []
    if r and isinstance(r[0], str):
        return taxonomy_type(r[0].lower())
    stem = rel.stem.lower().replace("-", "_")
    for name, itype in _type_names():
        if name in stem:
            return itype
    return None


@dataclass
class Conversations:
    rows: list[dict] = field(default_factory=list)  # pair columns, one per q-a-c / q-8b-c / q-c-c line
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> lines not turned into pairs
    files: int = 0


def roots(folder: Path) -> list[Path]:
    """The folders holding a trainer's meta_*.json files: each one's jsonl files are its data."""
    return sorted({p.parent for p in Path(folder).rglob("meta_*.json")})


def is_conversation_folder(folder: Path) -> bool:
    return bool(roots(folder))


def read_conversations(folder: str | Path) -> Conversations:
    """Every conversation line under the meta folders of `folder` as pair rows.

    pair_id: the record's own `pair_id` (our acm/ export writes it), else "<path>:<line>" relative to the
    folder given (the release's `id` repeats across files)."""
    folder = Path(folder)
    out = Conversations()

    def skip(reason: str) -> None:
        out.skipped[reason] = out.skipped.get(reason, 0) + 1

    for root in roots(folder):
        for path in sorted(root.rglob("*.jsonl")):
            rel = path.relative_to(folder)
            kind = _kind(path.relative_to(root))
            out.files += 1
            for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except ValueError as exc:
                    raise ValueError(f"{rel}:{lineno}: not a JSON object ({exc})") from None
                conv = rec.get("conversations") or []
                if len(conv) < 2:
                    skip("no gpt turn")
                    continue
                modality = next((m for m in MODALITIES if m in rec), None) or next(
                    (m for m in MODALITIES if m in rel.parts), None)
                q, a = split_human_turn(conv[0]["value"])
                if kind in (None, "q-c") or a is None:
                    skip("no rejected caption (plain instruction -> caption)" if kind == "q-c" or a is None
                         else "unknown kind folder")
                    continue
                out.rows.append({
                    "pair_id": str(rec.get("pair_id") or f"{rel.as_posix()}:{lineno}"),
                    "modality": modality, "instruction": q, "chosen": conv[1]["value"], "rejected": a,
                    "instruction_type": instruction_type_of(rel, rec), "is_qcc": kind == "q-c-c",
                    "rejection_strategy": STRATEGY[kind], "kind": kind,
                })
    return out
