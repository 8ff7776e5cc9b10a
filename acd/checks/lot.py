"""The check stage over one lot: deterministic checks on every pair, the judge on a stable sample.

check_lot returns the input rows, same order, with check_passed / check_failures / judge_score filled.
Cost model (2 CPU cores, 300k pairs, 30-minute build): the rules and near-duplicate pass are plain
Python at >50k pairs/s; the embedding judge manages tens of captions per second, so it sees only
`judge_sample_rate` of the pairs (by a stable hash of pair_id, so a rerun samples the same pairs) plus
`judge_min_per_lot` per lot, and only pairs the deterministic checks passed (the rest are regenerated).
"""
from __future__ import annotations

import hashlib
from typing import Any, Protocol

import pyarrow as pa

from acd.checks.config import checks_settings
from acd.checks.neardup import NEAR_DUPLICATE, near_duplicates
from acd.checks.rules import check_pair, vectorised_text_flags

JUDGE_PREFERS_REJECTED = "judge_prefers_rejected"
_REQUIRED = ("pair_id", "media_key", "instruction_type", "length_key", "is_qcc", "instruction", "chosen", "rejected")


class Judge(Protocol):
    """What check_lot needs from a judge (OfflineJudge, later an LLM judge)."""

    def compliance(self, instruction, caption, length=None, key_points=None) -> float: ...
    def prefetch(self, texts) -> None: ...


def sample_key(pair_id: str) -> float:
    """A stable uniform number in [0, 1) per pair: the same pair is sampled in every run and process."""
    return int.from_bytes(hashlib.blake2b(pair_id.encode(), digest_size=8).digest(), "big") / 2.0**64


def judge_sample(pair_ids: list[str], eligible: list[bool], rate: float, min_count: int) -> list[bool]:
    """Eligible rows whose sample_key < rate, topped up with the lowest keys to min_count."""
    keys = [sample_key(p) for p in pair_ids]
    picked = [e and k < rate for e, k in zip(eligible, keys)]
    short = min_count - sum(picked)
    if short > 0:
        rest = sorted((k, i) for i, (k, e, p) in enumerate(zip(keys, eligible, picked)) if e and not p)
        for _, i in rest[:short]:
            picked[i] = True
    return picked


def check_lot(pairs: pa.Table, cfg: Any = None, judge: Any | None = None,
              groundings: dict[str, str | None] | None = None, decontam: Any | None = None) -> pa.Table:
    """Fill check_passed (bool), check_failures (list<string>, [] when passed), judge_score (float|null).

    cfg: the recipe's `checks:` section (Checks; a mapping is validated into one). judge: an object with
    OfflineJudge's compliance()/prefetch(); made on demand when checks.judge == "offline".
    groundings: media_key -> grounding JSON, for the fact check of media whose source knows the truth.
    decontam: the evaluation texts' n-gram index (recipe.decontaminate, acd.checks.decontam.index_for):
    a pair sharing an n-gram with them fails with eval_text_overlap; None: no such check.
    """
    conf = checks_settings(cfg)
    missing = [c for c in _REQUIRED if c not in pairs.column_names]
    if missing:
        raise ValueError(f"check_lot: pairs table lacks columns {missing}")
    col = {c: pairs.column(c).to_pylist() for c in _REQUIRED}
    lc = pairs.column("length_constraint").to_pylist() if "length_constraint" in pairs.column_names else [None] * pairs.num_rows
    n = pairs.num_rows

    flags = vectorised_text_flags(*(pairs.column(c) for c in ("instruction", "chosen", "rejected")))
    modality = pairs.column("modality").to_pylist() if "modality" in pairs.column_names else [None] * n
    grounding = [(groundings or {}).get(k) for k in col["media_key"]]
    strategy = (pairs.column("rejection_strategy").to_pylist() if "rejection_strategy" in pairs.column_names
                else [None] * n)
    failures = [
        check_pair(col["instruction"][i], col["chosen"][i], col["rejected"][i], bool(col["is_qcc"][i]),
                   col["length_key"][i], lc[i], flags=tuple(f[i] for f in flags), modality=modality[i],
                   grounding=grounding[i], instruction_type=col["instruction_type"][i],
                   rejection_strategy=strategy[i], content=conf.content, decontam=decontam)
        for i in range(n)
    ]
    dup = near_duplicates(col["chosen"], col["media_key"], col["instruction_type"], conf.near_duplicate_threshold)
    for i in range(n):
        if dup[i]:
            failures[i].append(NEAR_DUPLICATE)

    scores: list[float | None] = [None] * n
    if conf.judge != "none" and n:
        if judge is None:
            if conf.judge != "offline":
                raise ValueError(f"checks.judge={conf.judge!r} needs a judge object (the pipeline builds an LLM "
                                 "judge from the recipe's backend); only 'offline' is made on demand")
            from acd.checks.judge import OfflineJudge  # torch loads only when a judge runs

            judge = OfflineJudge()
        scores = _run_judge(judge, pairs, col, lc, failures, conf)

    out = pairs
    for name, arr in (
        ("check_passed", pa.array([not f for f in failures], pa.bool_())),
        ("check_failures", pa.array(failures, pa.list_(pa.string()))),
        ("judge_score", pa.array(scores, pa.float64())),
    ):
        if name in out.column_names:
            out = out.set_column(out.column_names.index(name), name, arr)
        else:
            out = out.append_column(name, arr)
    return out


JUDGE_CHOSEN_NONCOMPLIANT = "judge_chosen_noncompliant"
JUDGE_UNAVAILABLE = "judge_unavailable"


def _run_verdicts(judge, pairs: pa.Table, rows: list[int], failures: list[list[str]]) -> list[float | None]:
    """A verdict judge (an LLM through a backend): one batched call, a JSON verdict per pair.

    score 0..4 becomes judge_score 0..1. A pair whose verdict could not be had fails with a reason, so an
    unjudged pair never passes silently when the recipe asked for a judge.
    """
    scores: list[float | None] = [None] * pairs.num_rows
    table = pairs.take(rows).to_pylist() if rows else []
    for i, v in zip(rows, judge.verdicts(table)):
        if v.get("chosen_complies") is None:
            failures[i].append(JUDGE_UNAVAILABLE)
            continue
        if v.get("score") is not None:
            scores[i] = round(max(0.0, min(4.0, float(v["score"]))) / 4.0, 6)
        if not v["chosen_complies"]:
            failures[i].append(JUDGE_CHOSEN_NONCOMPLIANT)
        elif not table[rows.index(i)]["is_qcc"] and v.get("rejected_worse") is False:
            failures[i].append(JUDGE_PREFERS_REJECTED)
    return scores


def _run_judge(judge, pairs: pa.Table, col: dict, lc: list, failures: list[list[str]], conf: dict) -> list[float | None]:
    n = pairs.num_rows
    kps = pairs.column("key_points").to_pylist() if "key_points" in pairs.column_names else [None] * n
    picked = judge_sample(col["pair_id"], [not f for f in failures], conf.judge_sample_rate, conf.judge_min_per_lot)
    rows = [i for i in range(n) if picked[i]]
    if hasattr(judge, "verdicts"):
        return _run_verdicts(judge, pairs, rows, failures)
    if hasattr(judge, "prefetch"):
        # one batched model call for the whole sample instead of one per pair
        from acd.checks.judge import strip_length_sentence

        texts: list[str] = []
        for i in rows:
            texts += [strip_length_sentence(col["instruction"][i] or ""), col["chosen"][i]]
            if not col["is_qcc"][i]:
                texts.append(col["rejected"][i])
        judge.prefetch(texts)
    scores: list[float | None] = [None] * n
    margin = float(getattr(judge, "spec", {}).get("prefer_margin", 0.05))
    for i in rows:
        length = lc[i] or col["length_key"][i]
        c = judge.compliance(col["instruction"][i], col["chosen"][i], length, kps[i])
        scores[i] = round(float(c), 6)
        if not col["is_qcc"][i]:
            a = judge.compliance(col["instruction"][i], col["rejected"][i], length, kps[i])
            if a - c > margin:
                failures[i].append(JUDGE_PREFERS_REJECTED)
    return scores
