"""The lot gate: from verdicts (automatic or human) to a lot decision and pairs with review columns.

review_lot() is what the pipeline calls for every lot; without human annotations it is the auto gate
(compliance from the automatic checks, review_status="auto", pending human confirmation). human_review()
is the same gate over Label Studio annotations, called by sync().
"""
from __future__ import annotations

from collections import defaultdict

import pyarrow as pa

from acd.checks.neardup import NEAR_DUPLICATE
from acd.records import PAIR_SCHEMA, conform
from acd.review.config import review_config
from acd.review.sampling import lot_id_of, sample_lot
from acd.review.stats import cohen_kappa, decide, percent_agreement

# One row per lot and review pass: <run>/review_decisions/<lot>/part-0.parquet
DECISION_SCHEMA = pa.schema([
    pa.field("lot_id", pa.string(), nullable=False),
    pa.field("mode", pa.string(), nullable=False),  # auto | label_studio
    pa.field("n", pa.int64(), nullable=False),  # pairs whose verdict was measured
    pa.field("population", pa.int64(), nullable=False),  # pairs in the lot
    pa.field("sampled", pa.int64(), nullable=False),  # pairs chosen for review (auto: all)
    pa.field("compliant", pa.int64(), nullable=False),
    pa.field("compliance", pa.float64()),
    pa.field("ci_low", pa.float64()),
    pa.field("ci_high", pa.float64()),
    pa.field("bar", pa.float64(), nullable=False),
    pa.field("confidence", pa.float64(), nullable=False),
    pa.field("decision", pa.string(), nullable=False),  # accepted | rejected | needs_more
    pa.field("action", pa.string(), nullable=False),  # keep | drop | regenerate | wait
    pa.field("gold_items", pa.int64()),
    pa.field("gold_accuracy", pa.float64()),  # share of gold annotations that caught the planted error
    pa.field("multi_rated", pa.int64()),  # items with two or more annotators
    pa.field("agreement", pa.float64()),  # percent agreement on those items
    pa.field("kappa", pa.float64()),  # Cohen's kappa, first vs second annotator of each such item
    pa.field("corrected", pa.int64()),
    pa.field("note", pa.string()),
])


def _action(decision: str, rc: dict) -> str:
    return {"accepted": "keep", "rejected": rc["on_reject"], "needs_more": "wait"}[decision]


def _decision_row(lot_id: str, mode: str, stats: dict, population: int, sampled: int, rc: dict, **extra) -> dict:
    row = {"lot_id": lot_id, "mode": mode, "population": population, "sampled": sampled,
           "bar": rc["compliance_bar"], "confidence": rc["confidence"], **stats}
    row["action"] = _action(row["decision"], rc)
    row.update(extra)
    return row


def review_lot(pairs: pa.Table, cfg: dict, seed: int) -> tuple[pa.Table, dict]:
    """The auto gate for one lot: compliance = share of pairs whose automatic checks passed (a null
    check counts as not passed), over the lot less its near-duplicates. Returns pairs (PAIR_SCHEMA) with
    review_status="auto" and review_decision set, and the lot decision dict (DECISION_SCHEMA keys).

    A pair that failed only the near-duplicate check is deduplication, not non-compliance: it is dropped
    like every failed pair, but it says nothing about whether captions follow their instructions (two clips
    with the same backdrop truthfully share a background caption). Counting such pairs against compliance
    rejected whole lots of fact-poor types at the paper's scale. A lot where more than
    review.max_duplicate_share of the pairs are near-duplicates is rejected all the same (a degenerate
    generator writes the same caption whatever it sees).

    The interval is reported as if the lot were a sample of the generator's output (no finite-population
    correction); since every pair was checked, a straddling interval is decided on the point estimate.
    When review.label_studio is set this is provisional: push_lot() sends the sample to annotators and
    sync() replaces the decision with the human one.
    """
    rc = review_config(cfg)
    lot = lot_id_of(pairs)
    n = pairs.num_rows
    passed = sum(1 for v in pairs.column("check_passed").to_pylist() if v)
    failures = pairs.column("check_failures").to_pylist() if "check_failures" in pairs.column_names else [None] * n
    dups = sum(1 for f in failures if f == [NEAR_DUPLICATE])
    stats = decide(passed, n - dups, bar=rc["compliance_bar"], confidence=rc["confidence"], margin=rc["margin"], census=True)
    if rc.get("label_studio"):
        note = f"provisional: automatic checks only; {len(sample_lot(pairs, cfg, seed))} pairs pending human review in Label Studio"
    else:
        note = "automatic checks only: review is pending human confirmation (review.label_studio is not set)"
    if dups:
        note += f"; {dups} near-duplicate pairs dropped as redundant (not counted in compliance)"
    if n and dups / n > rc["max_duplicate_share"]:
        stats["decision"] = "rejected"
        note += f"; rejected: near-duplicates {dups / n:.0%} > review.max_duplicate_share {rc['max_duplicate_share']:.0%}"
    decision = _decision_row(lot, "auto", stats, population=n, sampled=n, rc=rc, note=note)
    out = _set(pairs, "review_status", ["auto"] * n)
    out = _set(out, "review_decision", [decision["decision"]] * n)
    return conform(out, PAIR_SCHEMA), decision


def _set(table: pa.Table, name: str, values: list) -> pa.Table:
    arr = pa.array(values, PAIR_SCHEMA.field(name).type)
    if name in table.column_names:
        return table.set_column(table.schema.get_field_index(name), name, arr)
    return table.append_column(name, arr)


def verdict_ok(a: dict, is_qcc: bool) -> bool:
    """One annotation's verdict on a pair: the chosen caption complies and does not hallucinate, and
    (unless the pair is q-c-c by design) the rejected caption is worse."""
    if a.get("chosen_complies") is not True or a.get("chosen_hallucinates"):
        return False
    return True if is_qcc else a.get("rejected_worse") == "yes"


def human_review(pairs: pa.Table, tasks: list[dict], annotations: list[dict], cfg: dict) -> tuple[pa.Table, dict]:
    """The gate over Label Studio annotations for one lot.

    tasks: the lot's pushed tasks (pair_id, gold, ...); annotations: parsed annotation rows (pair_id,
    annotator, chosen_complies, ..., correction, updated_at, was_cancelled). An item with several
    annotators counts as compliant when more than half say so (a tie is not compliant). Gold items are
    kept out of the compliance and measure the annotators instead.
    """
    rc = review_config(cfg)
    lot = lot_id_of(pairs)
    rows = pairs.to_pylist()
    by_pair: dict[str, list[dict]] = defaultdict(list)
    for a in sorted(annotations, key=lambda a: (a["updated_at"] or "", a["annotation_id"])):
        if not a.get("was_cancelled"):
            by_pair[a["pair_id"]].append(a)
    gold_ids = {t["pair_id"] for t in tasks if t.get("gold")}
    sampled = [t["pair_id"] for t in tasks if not t.get("gold")]
    qcc = {r["pair_id"]: bool(r["is_qcc"]) for r in rows}

    ok_items = n_items = 0
    first_second: tuple[list[bool], list[bool]] = ([], [])
    ratings: list[list[bool]] = []
    for pid in sampled + sorted(gold_ids):
        anns = by_pair.get(pid, [])
        verdicts = [verdict_ok(a, qcc.get(pid, False)) for a in anns]
        if len({a["annotator"] for a in anns}) >= 2:
            ratings.append(verdicts)
            first_second[0].append(verdicts[0])
            first_second[1].append(verdicts[1])
        if pid in gold_ids or not anns:
            continue
        n_items += 1
        ok_items += sum(verdicts) * 2 > len(verdicts)
    gold_anns = [a for pid in gold_ids for a in by_pair.get(pid, [])]
    gold_caught = sum(1 for a in gold_anns if not verdict_ok(a, False))

    stats = decide(ok_items, n_items, bar=rc["compliance_bar"], confidence=rc["confidence"], margin=rc["margin"],
                   population=len(rows))
    corrected = 0
    sampled_set = set(sampled)
    status, decision_col, reviewer, chosen, original = [], [], [], [], []
    for r in rows:
        anns = by_pair.get(r["pair_id"], [])
        fixes = [a for a in anns if a.get("correction")]
        if fixes:  # the latest correction replaces chosen; the original and who changed it are kept
            corrected += 1
            chosen.append(fixes[-1]["correction"])
            original.append(r.get("original_chosen") or r["chosen"])
            reviewer.append(fixes[-1]["annotator"])
        else:
            chosen.append(r["chosen"])
            original.append(r.get("original_chosen"))
            reviewer.append(",".join(sorted({a["annotator"] for a in anns})) or r.get("reviewer"))
        status.append("reviewed" if anns else "sampled" if r["pair_id"] in sampled_set else "pending")
        decision_col.append(stats["decision"])
    out = pairs
    for name, values in (("chosen", chosen), ("original_chosen", original), ("reviewer", reviewer),
                         ("review_status", status), ("review_decision", decision_col)):
        out = _set(out, name, values)
    pending = len(sampled) - n_items
    note = f"{n_items} of {len(sampled)} sampled pairs reviewed" + (f", {pending} awaiting annotators" if pending else "")
    decision = _decision_row(
        lot, "label_studio", stats, population=len(rows), sampled=len(sampled), rc=rc,
        gold_items=len(gold_ids), gold_accuracy=(gold_caught / len(gold_anns)) if gold_anns else None,
        multi_rated=len(ratings), agreement=percent_agreement(ratings), kappa=cohen_kappa(*first_second),
        corrected=corrected, note=note,
    )
    return conform(out, PAIR_SCHEMA), decision


def annotator_accuracy(tasks: list[dict], annotations: list[dict]) -> list[dict]:
    """Per annotator: annotations, gold annotations, and the share of gold pairs they caught."""
    gold_ids = {t["pair_id"] for t in tasks if t.get("gold")}
    acc: dict[str, dict] = {}
    for a in annotations:
        if a.get("was_cancelled"):
            continue
        s = acc.setdefault(a["annotator"], {"annotator": a["annotator"], "annotations": 0, "gold_seen": 0, "gold_caught": 0})
        s["annotations"] += 1
        if a["pair_id"] in gold_ids:
            s["gold_seen"] += 1
            s["gold_caught"] += 0 if verdict_ok(a, False) else 1
    for s in acc.values():
        s["gold_accuracy"] = s["gold_caught"] / s["gold_seen"] if s["gold_seen"] else None
    return sorted(acc.values(), key=lambda s: s["annotator"])
