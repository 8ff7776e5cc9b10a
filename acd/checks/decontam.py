"""Text decontamination: an index of the n-grams of evaluation texts, and the question "does this text share
one with them?" (reason code `eval_text_overlap`).

Normalisation follows lm-eval's janitor and datatrove's NGramsDecontIndexer: case-folded, punctuation
deleted ("caption's" -> "captions"), whitespace collapsed, word tokens. Before that, the release's
length-constraint sentences (schemas/taxonomy.yaml's templates, any numbers) are cut out of every text, ours
and the evaluation's alike: the release shares them with AnyCapEval, so every constrained instruction would
match otherwise. A text falls into segments at those sentences, and no n-gram spans a cut (the words on either
side of a length sentence were never adjacent).

Grams: every run of n words of a segment. A segment shorter than n words is one gram, its whole normalised
text (our choice for short texts, e.g. an evaluation instruction of 11 words once its length sentence is cut):
it matches a segment of ours that is exactly that text, never a part of a longer one; so an evaluation
instruction copied verbatim is caught, while a three-word key point inside a long caption is not.

Hashing: a word is a 64-bit number (blake2b of its text, cached), a gram the 64-bit hash of its word numbers
(Python's tuple hash over ints: not salted, so one gram hashes alike in every process and run). The index is
a set of those ints, built once per process for a set of files and n (keyed by the files' sha256) and shared
by every lot of the process. A 64-bit collision between a caption gram and an evaluation gram is ~1e-19 per
comparison: never seen at these sizes.

Prefect-free; the check stage calls `TextIndex.overlap` per text (acd.checks.rules.check_pair).
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator

from acd.errors import AcdError

EVAL_TEXT_OVERLAP = "eval_text_overlap"
TEXT_SUFFIXES = (".jsonl", ".json", ".parquet")
# AnyCapEval's text fields (the official release's anycapeval/<modality>/ref_*.jsonl): the instruction and
# the reference caption (conversations[].value) and the key points. File names and restriction tags are not
# text a caption could copy.
ANYCAPEVAL_GLOB = "*/ref_*.jsonl"

_PUNCT = re.compile(r"[^\w\s]|_")


class DecontaminationError(AcdError):
    """An evaluation text file that cannot be read (missing, unknown format, not JSON)."""


@lru_cache(maxsize=1 << 18)
def _word_id(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big", signed=True)


def normalise(text: str) -> list[str]:
    """A text as lm-eval compares it: case-folded words, punctuation deleted, whitespace collapsed."""
    return _PUNCT.sub("", unicodedata.normalize("NFKC", text).casefold()).split()


def segments(text: str | None) -> list[list[str]]:
    """The normalised words of a text between the release's length sentences (cut out), empty ones dropped."""
    from acd.checks.length import sentence_patterns

    text = text or ""
    # Every length sentence names "length": a text without the word needs none of the seven patterns.
    for rx in sentence_patterns() if "length" in text.casefold() else ():  # (their groups would come back from rx.split: cut with a marker instead)
        text = rx.sub("\0", text)
    return [w for w in (normalise(p) for p in text.split("\0")) if w]


def _grams(words: list[str], n: int) -> Iterator[int]:
    ids = [_word_id(w) for w in words]
    if len(ids) < n:
        return iter((hash(tuple(ids)),))
    return map(hash, zip(*(ids[j:] for j in range(n))))  # every n-gram, hashed in C


def text_grams(text: str | None, n: int) -> Iterator[int]:
    for words in segments(text):
        yield from _grams(words, n)


@dataclass(eq=False)  # hashed by identity: check_pair's memo takes it as an argument
class TextIndex:
    """The hashed n-grams of a set of evaluation texts."""
    ngram: int
    grams: frozenset[int]
    texts: int  # distinct evaluation texts indexed
    files: tuple[str, ...]
    digest: str  # sha256 over the files' bytes and n: what the index was built from
    build_s: float = 0.0  # seconds the index took to build in this process

    def overlap(self, text: str | None) -> bool:
        """Whether the text shares a normalised n-gram (or, being short, its whole text) with the index."""
        return bool(text) and not self.grams.isdisjoint(text_grams(text, self.ngram))

    def first_match(self, text: str | None) -> str | None:
        """The first shared gram as normalised words (for reports), or None."""
        for words in segments(text):
            starts = [0] if len(words) < self.ngram else range(len(words) - self.ngram + 1)
            for i in starts:
                gram = words[i:i + self.ngram]
                if hash(tuple(_word_id(w) for w in gram)) in self.grams:
                    return " ".join(gram)
        return None


# --- reading evaluation texts -------------------------------------------------------------------------------

def _strings(value: Any) -> Iterator[str]:
    """Every string inside a JSON value or a row (lists and mappings walked; keys are not text)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def _jsonl_rows(path: Path) -> Iterator[Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        data = json.loads(text)
        yield from (data if isinstance(data, list) else [data])
        return
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                yield json.loads(line)
            except ValueError as e:
                raise DecontaminationError(f"{path}:{i}: not JSON ({e.msg})") from None


def _has_string(t) -> bool:
    import pyarrow as pa

    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return True
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _has_string(t.value_type)
    if pa.types.is_struct(t):
        return any(_has_string(f.type) for f in t)
    return False


def read_texts(path: str | Path) -> Iterator[str]:
    """Every string of an evaluation file: jsonl / json (every string value, nested ones too) or parquet
    (every string column, and strings inside list and struct columns)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DecontaminationError(f"decontaminate.texts: {path} is not a file")
    if path.suffix in (".jsonl", ".json"):
        for row in _jsonl_rows(path):
            yield from _strings(row)
    elif path.suffix == ".parquet":
        import pyarrow.parquet as pq

        f = pq.ParquetFile(path)
        cols = [fld.name for fld in f.schema_arrow if _has_string(fld.type)]
        if not cols:
            return
        for batch in f.iter_batches(columns=cols, batch_size=8192):
            for row in batch.to_pylist():
                yield from _strings(row)
    else:
        raise DecontaminationError(f"decontaminate.texts: {path}: unknown format (use {', '.join(TEXT_SUFFIXES)})")


def anycapeval_files(release_dir: str | Path | None = None) -> list[Path]:
    """The AnyCapEval text files of the official release: <release_dir>/anycapeval/<modality>/ref_*.jsonl
    (release_dir may also be the anycapeval folder itself); null: acd.paths.REFERENCE_DIR ($ACD_REFERENCE)."""
    from acd.paths import REFERENCE_DIR

    root = Path(release_dir).expanduser() if release_dir else REFERENCE_DIR
    for d in (root / "anycapeval", root):
        files = sorted(d.glob(ANYCAPEVAL_GLOB)) if d.is_dir() else []
        if files:
            return files
    raise DecontaminationError(
        f"decontaminate: anycapeval: no AnyCapEval files (anycapeval/<modality>/ref_*.jsonl) under {root}; "
        "set decontaminate.release_dir (or $ACD_REFERENCE) to the official AnyCap release")


def anycapeval_texts(path: Path) -> Iterator[str]:
    """An AnyCapEval file's texts: instruction and reference caption (conversations[].value), key points."""
    for row in _jsonl_rows(path):
        for turn in row.get("conversations") or []:
            if isinstance(turn, dict) and isinstance(turn.get("value"), str):
                yield turn["value"]
        yield from (k for k in row.get("key_point") or [] if isinstance(k, str))


# --- the index, once per process ----------------------------------------------------------------------------

_CACHE: dict[str, TextIndex] = {}
_CACHE_LOCK = threading.Lock()


def _file_digest(paths: Iterable[Path], ngram: int, kinds: Iterable[str]) -> str:
    h = hashlib.sha256(f"decontam/1 n={ngram}\0".encode())
    for p, kind in zip(paths, kinds):
        h.update(kind.encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def build_index(sources: list[tuple[Path, str]], ngram: int) -> TextIndex:
    """The index of the given files; kind "texts" (every string) or "anycapeval" (its text fields).
    Cached per process by the files' digest and n: every lot of a build shares one."""
    import time

    paths = [Path(p) for p, _ in sources]
    for p in paths:
        if not p.is_file():
            raise DecontaminationError(f"decontaminate: {p} is not a file")
    digest = _file_digest(paths, ngram, (k for _, k in sources))
    with _CACHE_LOCK:
        if digest in _CACHE:
            return _CACHE[digest]
        t0 = time.perf_counter()
        grams: set[int] = set()
        seen: set[str] = set()
        for p, kind in zip(paths, (k for _, k in sources)):
            for text in (anycapeval_texts(p) if kind == "anycapeval" else read_texts(p)):
                if text in seen:
                    continue
                seen.add(text)
                grams.update(text_grams(text, ngram))
        texts = sum(1 for t in seen if segments(t))
        index = TextIndex(ngram=ngram, grams=frozenset(grams), texts=texts, files=tuple(map(str, paths)),
                          digest=digest, build_s=round(time.perf_counter() - t0, 4))
        _CACHE[digest] = index
        return index


def sources_of(section) -> list[tuple[Path, str]]:
    """The evaluation text files a recipe's `decontaminate:` section names: `texts` and the profile's."""
    out = [(Path(p).expanduser(), "texts") for p in section.texts]
    if section.profile == "anycapeval":
        out += [(p, "anycapeval") for p in anycapeval_files(section.release_dir)]
    return out


def index_for(section) -> TextIndex | None:
    """The recipe's text index (recipe.decontaminate), or None when it names no evaluation texts."""
    sources = sources_of(section) if section is not None else []
    return build_index(sources, section.ngram) if sources else None
