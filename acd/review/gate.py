"""The lot gate: from verdicts (automatic or human) to a lot decision and pairs with review columns.

review_lot() is what the pipeline calls for every lot; without human annotations it is the auto gate
(the share of pairs that passed automatic checks, review_status="auto", pending human confirmation; it is
stored in the decision's `compliance` field but shown as "passed automatic checks", never as compliance:
acd.review.present). human_review() is the same gate over Label Studio annotations: there the figure is
compliance, from people's verdicts. It is called by sync().
"""
from __future__ import annotations

from collections import defaultdict

import pyarrow as pa

from acd.checks.decontam import EVAL_TEXT_OVERLAP
from acd.checks.neardup import NEAR_DUPLICATE
from acd.records import PAIR_SCHEMA, conform, rows_to_table
from acd.recipe_model import Review
from acd.review.config import review_settings
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
    # Human review not finished (no valid verdict yet, or needs_more): `decision` is the automatic gate's.
    pa.field("pending", pa.bool_()),
    pa.field("human_decision", pa.string()),  # accepted | rejected | needs_more | null (no verdict yet)
    pa.field("reviewers", pa.int64()),  # distinct annotators with a valid verdict on the lot
    pa.field("invalid", pa.int64()),  # annotations without a usable verdict: excluded, listed in review_issues
    pa.field("skipped", pa.int64()),
    pa.field("deleted", pa.int64()),  # annotations deleted in Label Studio after a sync had read them
    pa.field("dropped", pa.int64()),  # pairs judged non-compliant with no usable correction: not exported
    pa.field("refused_corrections", pa.int64()),  # corrections that fail the checks (length, q-c-c, ...)
    pa.field("rounds", pa.int64()),  # sample rounds pushed (sequential sampling)
])

# What the review saw besides verdicts, one row each: <run>/review_issues/<lot>/part-0.parquet
ISSUE_SCHEMA = pa.schema([
    pa.field("lot_id", pa.string(), nullable=False),
    pa.field("pair_id", pa.string(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),  # invalid | skipped | deleted | correction_refused | dropped
    pa.field("reason", pa.string()),
    pa.field("annotation_id", pa.int64()),
    pa.field("task_id", pa.int64()),
    pa.field("annotator", pa.string()),
])


def _action(decision: str, rc: Review) -> str:
    return {"accepted": "keep", "rejected": rc.on_reject, "needs_more": "wait"}[decision]


def _decision_row(lot_id: str, mode: str, stats: dict, population: int, sampled: int, rc: Review, **extra) -> dict:
    row = {"lot_id": lot_id, "mode": mode, "population": population, "sampled": sampled,
           "bar": rc.compliance_bar, "confidence": rc.confidence, **stats}
    row["action"] = _action(row["decision"], rc)
    row.update(extra)
    return row


def review_lot(pairs: pa.Table, cfg: Review | dict, seed: int) -> tuple[pa.Table, dict]:
    """The auto gate for one lot: the share of pairs that passed automatic checks (a null check counts as
    not passed), over the lot less its near-duplicates; stored as `compliance`, shown as "passed automatic
    checks" (what that share is worth, acd.checks.bench measures against blind readers). Returns pairs
    (PAIR_SCHEMA) with review_status="auto" and review_decision set, and the lot decision dict
    (DECISION_SCHEMA keys).

    A pair that failed only the near-duplicate check is deduplication, not non-compliance: it is dropped
    like every failed pair, but it says nothing about whether captions follow their instructions (two clips
    with the same backdrop truthfully share a background caption). Counting such pairs against compliance
    rejected whole lots of fact-poor types at the paper's scale. A lot where more than
    review.max_duplicate_share of the pairs are near-duplicates is rejected all the same (a degenerate
    generator writes the same caption whatever it sees).
    A pair that failed only for overlapping an evaluation set's texts (eval_text_overlap, with or without
    near-duplicate) is dropped the same way: it left for the dataset's decontamination policy, and says
    nothing about compliance either.

    The interval is reported as if the lot were a sample of the generator's output (no finite-population
    correction); since every pair was checked, a straddling interval is decided on the point estimate.
    When review.label_studio is set this is provisional: push_lot() sends the sample to annotators and
    sync() replaces the decision with the human one.
    """
    rc = review_settings(cfg)
    lot = lot_id_of(pairs)
    n = pairs.num_rows
    passed = sum(1 for v in pairs.column("check_passed").to_pylist() if v)
    failures = pairs.column("check_failures").to_pylist() if "check_failures" in pairs.column_names else [None] * n
    dups = sum(1 for f in failures if f == [NEAR_DUPLICATE])
    overlaps = sum(1 for f in failures if f and EVAL_TEXT_OVERLAP in f and set(f) <= {EVAL_TEXT_OVERLAP, NEAR_DUPLICATE})
    stats = decide(passed, n - dups - overlaps, bar=rc.compliance_bar, confidence=rc.confidence, margin=rc.margin, census=True)
    if rc.label_studio:
        note = f"provisional: automatic checks only; {len(sample_lot(pairs, rc, seed))} pairs pending human review in Label Studio"
    else:
        note = "automatic checks only: review is pending human confirmation (review.label_studio is not set)"
    if dups:
        note += f"; {dups} near-duplicate pairs dropped as redundant (not counted in the passed-checks share)"
    if overlaps:
        note += f"; {overlaps} pairs overlapping evaluation texts dropped (not counted in the passed-checks share)"
    if n and dups / n > rc.max_duplicate_share:
        stats["decision"] = "rejected"
        note += f"; rejected: near-duplicates {dups / n:.0%} > review.max_duplicate_share {rc.max_duplicate_share:.0%}"
    decision = _decision_row(lot, "auto", stats, population=n, sampled=n, rc=rc, note=note, pending=True)
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


def split_annotations(annotations: list[dict]) -> tuple[dict[str, dict[str, dict]], list[dict], list[dict], list[dict]]:
    """(valid verdicts per pair as {annotator: latest annotation}, skipped, invalid, deleted).

    Deleted (gone from Label Studio) and skipped (cancelled) annotations carry no verdict; invalid ones
    (acd.review.labelstudio.parse_result) neither: all three are reported, none is counted. An annotator who
    answered a task twice counts once, with their latest answer. Annotators keep the order they first
    answered in (first and second rater for kappa)."""
    by_pair: dict[str, dict[str, dict]] = defaultdict(dict)
    skipped, invalid, deleted = [], [], []
    for a in sorted(annotations, key=lambda a: (a.get("updated_at") or "", a["annotation_id"])):
        if a.get("deleted"):
            deleted.append(a)
        elif a.get("was_cancelled"):
            skipped.append(a)
        elif a.get("invalid"):
            invalid.append(a)
        else:
            by_pair[a["pair_id"]][a["annotator"]] = a
    return by_pair, skipped, invalid, deleted


def recheck_correction(row: dict, correction: str) -> tuple[str, list[str]]:
    """An annotator's caption goes through the deterministic checks a generated one does (length
    constraint, empty/refusal/leak, chosen vs rejected). Returns (the pair's rejected caption after the
    correction, failure codes): a q-c-c pair's rejected is its chosen, so it follows the correction."""
    from acd.checks.rules import check_pair

    rejected = correction if row.get("is_qcc") else row.get("rejected")
    fails = check_pair(row.get("instruction"), correction, rejected, bool(row.get("is_qcc")),
                       row.get("length_key") or "none", row.get("length_constraint"))
    return rejected, fails


REVIEW_NOT_COMPLIANT = "review_not_compliant"  # check_failures code: annotators said no and gave no usable fix


def human_review(pairs: pa.Table, tasks: list[dict], annotations: list[dict], cfg: Review | dict,
                 auto: dict | None = None) -> tuple[pa.Table, dict]:
    """The gate over Label Studio annotations for one lot.

    tasks: the lot's pushed tasks (pair_id, gold, ...); annotations: parsed annotation rows (pair_id,
    annotator, chosen_complies, ..., correction, updated_at, was_cancelled, invalid, deleted). An item with
    several annotators counts as compliant when more than half say so (a tie is not compliant). Gold items
    are kept out of the compliance and measure the annotators instead.

    auto: the lot's automatic decision (review_lot). Until annotators decide the lot (no valid verdict yet,
    or an interval that still straddles the bar) that decision stands and the row says `pending`.

    Per pair: the latest correction that passes the checks replaces chosen (and a q-c-c pair's rejected);
    a pair the annotators judge non-compliant without such a correction leaves the dataset
    (check_passed=false, check_failures += review_not_compliant). The decision dict carries `issues`
    (invalid, skipped and deleted annotations, refused corrections, dropped pairs) for the run's record.
    """
    rc = review_settings(cfg)
    lot = lot_id_of(pairs)
    rows = pairs.to_pylist()
    by_pair, skipped, invalid, deleted = split_annotations(annotations)
    gold_ids = {t["pair_id"] for t in tasks if t.get("gold")}
    sampled = [t["pair_id"] for t in tasks if not t.get("gold")]
    qcc = {r["pair_id"]: bool(r["is_qcc"]) for r in rows}

    ok_items = n_items = 0
    ok_by_pair: dict[str, bool] = {}
    first_second: tuple[list[bool], list[bool]] = ([], [])
    ratings: list[list[bool]] = []
    for pid in sampled + sorted(gold_ids):
        anns = list(by_pair.get(pid, {}).values())
        verdicts = [verdict_ok(a, qcc.get(pid, False)) for a in anns]
        if len(anns) >= 2:
            ratings.append(verdicts)
            first_second[0].append(verdicts[0])
            first_second[1].append(verdicts[1])
        if pid in gold_ids or not anns:
            continue
        n_items += 1
        ok_by_pair[pid] = sum(verdicts) * 2 > len(verdicts)
        ok_items += ok_by_pair[pid]
    gold_anns = [a for pid in gold_ids for a in by_pair.get(pid, {}).values()]
    gold_caught = sum(1 for a in gold_anns if not verdict_ok(a, False))

    stats = decide(ok_items, n_items, bar=rc.compliance_bar, confidence=rc.confidence, margin=rc.margin,
                   population=len(rows))
    answered = {a["pair_id"] for a in skipped + invalid} | set(by_pair)
    outstanding = [pid for pid in sampled if pid not in answered]
    note_extra = ""
    if stats["decision"] == "needs_more" and n_items and not outstanding and len(set(sampled)) >= len(rows):
        # Every pair of the lot was pushed and every task answered, some without a verdict (skips, invalid):
        # nothing more can be sampled, so the measured pairs decide on their exact compliance.
        stats["decision"] = "accepted" if stats["compliance"] > rc.compliance_bar else "rejected"
        note_extra = "; every pair pushed and answered: decided on exact compliance"

    issues: list[dict] = []

    def issue(kind: str, pid: str, reason: str | None, a: dict | None = None):
        issues.append({"lot_id": lot, "pair_id": pid, "kind": kind, "reason": reason,
                       "annotation_id": a.get("annotation_id") if a else None,
                       "task_id": a.get("task_id") if a else None, "annotator": a.get("annotator") if a else None})

    for kind, group in (("invalid", invalid), ("skipped", skipped), ("deleted", deleted)):
        for a in group:
            issue(kind, a["pair_id"], a.get("invalid") if kind == "invalid" else a.get("skip_reason")
                  if kind == "skipped" else "deleted in Label Studio", a)

    corrected = dropped = refused = 0
    sampled_set = set(sampled)
    out_rows = []
    for r in rows:
        r = dict(r)
        anns = list(by_pair.get(r["pair_id"], {}).values())
        fixes = sorted((a for a in anns if a.get("correction")), key=lambda a: (a.get("updated_at") or "", a["annotation_id"]))
        applied = False
        if fixes:  # the latest correction replaces chosen, if it passes the checks; original and author kept
            fix = fixes[-1]
            rejected, fails = recheck_correction(r, fix["correction"])
            if fails:
                refused += 1
                issue("correction_refused", r["pair_id"], ", ".join(fails), fix)
            else:
                applied = True
                corrected += 1
                r["original_chosen"] = r.get("original_chosen") or r["chosen"]
                r["chosen"], r["rejected"], r["reviewer"] = fix["correction"], rejected, fix["annotator"]
        if not applied:
            r["reviewer"] = ",".join(sorted(a["annotator"] for a in anns)) or r.get("reviewer")
        if anns and not ok_by_pair.get(r["pair_id"], True) and not applied and r.get("check_passed"):
            dropped += 1
            r["check_passed"] = False
            r["check_failures"] = list(r.get("check_failures") or []) + [REVIEW_NOT_COMPLIANT]
            issue("dropped", r["pair_id"], "judged non-compliant without a usable correction")
        r["review_status"] = "reviewed" if anns else "sampled" if r["pair_id"] in sampled_set else "pending"
        out_rows.append(r)

    human_decision = stats["decision"] if n_items else None
    pending = human_decision in (None, "needs_more")
    extra = dict(
        gold_items=len(gold_ids), gold_accuracy=(gold_caught / len(gold_anns)) if gold_anns else None,
        multi_rated=len(ratings), agreement=percent_agreement(ratings), kappa=cohen_kappa(*first_second),
        corrected=corrected, pending=pending, human_decision=human_decision,
        reviewers=len({a for v in by_pair.values() for a in v}), invalid=len(invalid), skipped=len(skipped),
        deleted=len(deleted), dropped=dropped, refused_corrections=refused,
    )
    waiting = len(sampled) - n_items
    note = f"{n_items} of {len(sampled)} sampled pairs reviewed" + (f", {waiting} awaiting annotators" if waiting else "")
    note += "".join(f", {v} {k}" for k, v in (("invalid annotations excluded", len(invalid)), ("skipped", len(skipped)),
                                              ("deleted", len(deleted)), ("pairs dropped as non-compliant", dropped),
                                              ("corrections refused by the checks", refused)) if v)
    note += note_extra
    if pending and auto is not None:
        # The automatic decision stands (and ships or withholds the lot) until annotators decide.
        base = {k: auto[k] for k in ("n", "compliant", "compliance", "ci_low", "ci_high")} if not n_items else stats
        stats = dict(base, decision=auto["decision"])
        note += f"; human review pending: the automatic decision ({auto['decision']}) stands"
    decision = _decision_row(lot, "label_studio" if n_items else "auto", stats, population=len(rows),
                             sampled=len(sampled), rc=rc, note=note, **extra)
    for r in out_rows:
        r["review_decision"] = decision["decision"]
    decision["issues"] = issues
    return conform(rows_to_table(out_rows, PAIR_SCHEMA), PAIR_SCHEMA), decision


def annotator_accuracy(tasks: list[dict], annotations: list[dict]) -> list[dict]:
    """Per annotator: valid verdicts (latest per task), skips, invalid annotations, gold verdicts, and the
    share of gold pairs they caught. Deleted annotations count nowhere."""
    gold_ids = {t["pair_id"] for t in tasks if t.get("gold")}
    by_pair, skipped, invalid, _ = split_annotations(annotations)
    acc: dict[str, dict] = {}

    def entry(who: str) -> dict:
        return acc.setdefault(who, {"annotator": who, "annotations": 0, "skipped": 0, "invalid": 0,
                                    "gold_seen": 0, "gold_caught": 0})

    for pid, anns in by_pair.items():
        for who, a in anns.items():
            s = entry(who)
            s["annotations"] += 1
            if pid in gold_ids:
                s["gold_seen"] += 1
                s["gold_caught"] += 0 if verdict_ok(a, False) else 1
    for kind, group in (("skipped", skipped), ("invalid", invalid)):
        for a in group:
            entry(a["annotator"])[kind] += 1
    for s in acc.values():
        s["gold_accuracy"] = s["gold_caught"] / s["gold_seen"] if s["gold_seen"] else None
    return sorted(acc.values(), key=lambda s: s["annotator"])
