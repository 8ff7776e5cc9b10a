"""The "Duplicates and contamination" section of the dataset card, the run report and `acd stats --run-dir`:
what left the dataset as a duplicate or as overlapping an evaluation set, from DuckDB over the run's parts.

  quarantine rows, stage dedup: reason `duplicate` (media deduplicated at ingest, recipe.dedup.media) and
      `eval_overlap` (media matching an evaluation set's media, recipe.decontaminate.media);
  generate rows whose check_failures hold `eval_text_overlap` (a pair whose final attempt still shared an
      n-gram with an evaluation text, acd.checks.decontam; never exported). Pairs that overlapped on an
      earlier attempt and healed on a new one are not counted: like every check failure, only the final
      attempt's reasons are kept.

One summary (plain data) and one markdown rendering, so the three places say the same.
"""
from __future__ import annotations

from typing import Any

from acd.checks.decontam import EVAL_TEXT_OVERLAP

MEDIA_REASONS = ("duplicate", "eval_overlap")
EXAMPLES = 3  # per reason


def summarize(store, recipe, examples: int = EXAMPLES) -> dict[str, Any]:
    """Counts by reason, the thresholds they were found with, and a few examples (sorted: deterministic)."""
    from acd.checks.decontam import DecontaminationError, index_for

    dec = recipe.decontaminate
    counts: dict[str, int] = {r: 0 for r in (*MEDIA_REASONS, EVAL_TEXT_OVERLAP)}
    shown: list[dict[str, str]] = []
    if store.has_stage("quarantine"):
        for reason in MEDIA_REASONS:
            rows = store.sql("select source, source_id, detail from {quarantine} where reason = $r "
                             "order by source, source_id", r=reason).to_pylist()
            counts[reason] = len(rows)
            shown += [{"reason": reason, "item": f"{r['source']}:{r['source_id']}", "detail": r["detail"] or ""}
                      for r in rows[:examples]]
    try:
        index = index_for(dec)
    except DecontaminationError:  # the evaluation files moved since the build: counts without the matched words
        index = None
    if store.has_stage("generate"):
        rows = store.sql("select pair_id, instruction, chosen, rejected from {generate} "
                         "where list_contains(check_failures, $r) order by pair_id", r=EVAL_TEXT_OVERLAP).to_pylist()
        counts[EVAL_TEXT_OVERLAP] = len(rows)
        for r in rows[:examples]:
            where = ""
            for field in ("instruction", "chosen", "rejected"):
                gram = index.first_match(r[field]) if index is not None else None
                if gram:
                    where = f"{field}: “{gram}”"
                    break
            shown.append({"reason": EVAL_TEXT_OVERLAP, "item": r["pair_id"], "detail": where})
    texts = [str(p) for p in dec.texts] + ([f"AnyCapEval ({dec.release_dir or 'reference release'})"]
                                           if dec.profile == "anycapeval" else [])
    return {
        "counts": counts,
        "dedup": recipe.dedup.media,
        "eval_media_sources": len(dec.media),
        "eval_texts": texts,
        "ngram": dec.ngram,
        "eval_text_count": index.texts if index is not None else None,
        "eval_grams": len(index.grams) if index is not None else None,
        "examples": shown,
    }


def markdown(s: dict[str, Any]) -> str:
    """The section's body (no heading): the same text in the card, the run report and `acd stats`."""
    c = s["counts"]
    lines = [
        "| reason | what | count |", "|---|---|---:|",
        f"| duplicate | media quarantined as a duplicate of a kept item (dedup.media: {s['dedup']}) | {c['duplicate']} |",
        f"| eval_overlap | media quarantined as matching an evaluation set's media | {c['eval_overlap']} |",
        f"| {EVAL_TEXT_OVERLAP} | pairs whose final attempt shared a text n-gram with an evaluation set (not exported) "
        f"| {c[EVAL_TEXT_OVERLAP]} |",
        "",
    ]
    media = (f"{s['eval_media_sources']} evaluation media source(s)" if s["eval_media_sources"]
             else "no evaluation media named")
    if s["eval_texts"]:
        count = s["eval_text_count"] if s["eval_text_count"] is not None else "?"
        texts = (f"{count} evaluation texts from {', '.join(s['eval_texts'])} ({s['eval_grams'] or '?'} distinct "
                 f"{s['ngram']}-grams); texts are compared case-folded, without punctuation, with the release's "
                 f"length-constraint sentences cut out (it shares them with AnyCapEval); a pair that overlaps is "
                 f"written again (new attempt) and dropped if it still does")
    else:
        texts = "no evaluation texts named (recipe.decontaminate.texts / profile): text overlap not checked"
    lines += [f"Thresholds: media dedup {s['dedup']}; {media}; n-gram length {s['ngram']}; {texts}.", ""]
    if s["examples"]:
        lines += ["| reason | item | detail |", "|---|---|---|"]
        lines += [f"| {e['reason']} | {e['item']} | {e['detail'].replace('|', '/')} |" for e in s["examples"]]
        lines.append("")
    return "\n".join(lines)
