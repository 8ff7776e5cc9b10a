"""AnyCapEval scoring: content = key-point coverage + KPD, style = a 0-4 rubric.

The judge is acd.checks.judge.OfflineJudge (MiniLM embeddings) by default, or an LLM behind any backend
(`LLMStyleJudge`). Offline style rubric, one point each, so every point can be read off the result:
  length   1 pt  the caption satisfies the item's length constraint (acd.checks.length)
  form     1 pt  the instruction type's form: poem -> >= 3 lines; narrative -> >= 2 sentences and story
                 markers; brief -> <= 30 words and <= 2 sentences; detail -> >= 40 words; theme /
                 perspective / others -> the caption is relevant to the instruction
  semantic 2 pt  similarity to the reference caption (>= sim_hi: 2, >= sim_lo: 1)
"""
from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np

from acd.checks.length import count_sentences, count_words, parse_constraint, satisfies

SIM_LO, SIM_HI = 0.5, 0.7
_STORY = re.compile(r"\b(once|then|as|when|while|until|after|before|finally|suddenly|story|tale|journey|"
                    r"[a-z]+ed|was|were|had)\b", re.IGNORECASE)


def get_judge():
    from acd.checks.judge import OfflineJudge

    return OfflineJudge()


def content_score(judge, caption: str, key_points: Sequence[str]) -> dict[str, Any]:
    """{coverage, matched, kpd} from the judge (KPD = matched key points per 100 words)."""
    s = judge.score_keypoints(caption or "", list(key_points))
    return {"coverage": float(s["coverage"]), "matched": int(s["matched"]), "kpd": float(s["kpd"])}


def form_ok(judge, instruction_type: str, instruction: str, caption: str) -> bool:
    caption = caption or ""
    words, sents = count_words(caption), count_sentences(caption)
    if instruction_type == "poem":
        lines = [l for l in caption.splitlines() if l.strip()]
        return len(lines) >= 3
    if instruction_type == "narrative":
        return sents >= 2 and len(_STORY.findall(caption)) >= 2
    if instruction_type == "brief":
        return 0 < words <= 30 and sents <= 2
    if instruction_type == "detail":
        return words >= 40
    return judge.relevance(instruction, caption) >= 0.5


def style_score(judge, item: dict, caption: str) -> dict[str, Any]:
    """0-4 rubric (see module doc) with its parts."""
    constraint = parse_constraint(item.get("length_constraint") or item["instruction"])
    length_ok = satisfies(caption or "", constraint)
    form = form_ok(judge, item["instruction_type"], item["instruction"], caption)
    sim = 0.0
    if item.get("reference") and (caption or "").strip():
        e = judge.embed([caption, item["reference"]])
        sim = float(e[0] @ e[1])
    sem_pts = 2 if sim >= SIM_HI else (1 if sim >= SIM_LO else 0)
    return {"style": int(length_ok) + int(form) + sem_pts, "length_ok": length_ok, "form_ok": form,
            "ref_similarity": round(sim, 4)}


class LLMStyleJudge:
    """The style rubric asked of a model behind any acd backend (role "judge"); answer = a digit 0-4."""

    PROMPT = ("Score how well the caption follows the instruction's style and length, from 0 (not at all) to 4 "
              "(perfectly), using the reference caption as an example of a perfect answer.\n"
              "Instruction: {instruction}\nReference: {reference}\nCaption: {caption}\nAnswer with one digit.")

    def __init__(self, backend_config: dict):
        from acd.backends.base import make_backend

        self.backend = make_backend(backend_config)

    def score_many(self, items: list[dict], captions: list[str]) -> list[dict]:
        from acd.backends.base import GenRequest

        reqs = [GenRequest(request_id=f"style:{i}", role="judge", pair={"instruction": it["instruction"]}, media={},
                           messages=[{"role": "user", "content": self.PROMPT.format(
                               instruction=it["instruction"], reference=it.get("reference", ""), caption=c)}],
                           params={"temperature": 0.0, "max_tokens": 4})
                for i, (it, c) in enumerate(zip(items, captions))]
        by_id = {r.request_id: r for r in self.backend.generate(reqs)}
        out = []
        for i in range(len(items)):
            r = by_id.get(f"style:{i}")
            m = re.search(r"[0-4]", (r.text or "") if r and r.status == "ok" else "")
            out.append({"style": int(m.group()) if m else None, "judge_error": None if m else "unparsed"})
        return out


# ------------------------------------------------------------------------------------------ judge sanity
def auc(pos: Sequence[float], neg: Sequence[float]) -> float:
    """P(a positive scores above a negative), ties count half (Mann-Whitney U / (n_pos * n_neg))."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    if not len(pos) or not len(neg):
        return float("nan")
    gt = (pos[:, None] > neg[None, :]).sum()
    eq = (pos[:, None] == neg[None, :]).sum()
    return float((gt + 0.5 * eq) / (len(pos) * len(neg)))


def keypoint_auc(judge, items: list[dict], seed: int = 0) -> dict[str, Any]:
    """Each reference caption scored against its own key points (positives) and against another item's of
    the same modality (negatives, a fixed derangement). Uses the graded similarity (mean best cosine of the
    key points) so ties do not dominate; also reports the thresholded coverage AUC."""
    rng = np.random.default_rng(seed)
    items = [it for it in items if it.get("key_points")]
    pos_sim, neg_sim, pos_cov, neg_cov = [], [], [], []
    by_mod: dict[str, list[dict]] = {}
    for it in items:
        by_mod.setdefault(it["modality"], []).append(it)
    for group in by_mod.values():
        if len(group) < 2:
            continue
        shift = int(rng.integers(1, len(group)))
        for i, it in enumerate(group):
            other = group[(i + shift) % len(group)]
            for kps, sims, covs in ((it["key_points"], pos_sim, pos_cov), (other["key_points"], neg_sim, neg_cov)):
                sims.append(float(judge.keypoint_similarities(it["reference"], kps).mean()))
                covs.append(judge.score_keypoints(it["reference"], kps)["coverage"])
    return {"n_items": len(pos_sim), "auc_similarity": auc(pos_sim, neg_sim), "auc_coverage": auc(pos_cov, neg_cov),
            "mean_coverage_own": float(np.mean(pos_cov)) if pos_cov else None,
            "mean_coverage_other": float(np.mean(neg_cov)) if neg_cov else None}


def length_pass_rate(items: list[dict]) -> dict[str, Any]:
    """Share of reference captions that satisfy their own length constraint (items that carry one)."""
    n = ok = 0
    per_form: dict[str, list[int]] = {}
    for it in items:
        c = parse_constraint(it.get("length_constraint") or it["instruction"])
        if c is None:
            continue
        n += 1
        good = satisfies(it["reference"], c)
        ok += good
        per_form.setdefault(c.form, [0, 0])
        per_form[c.form][0] += good
        per_form[c.form][1] += 1
    return {"n_items": n, "pass_rate": ok / n if n else None,
            "per_form": {f: round(a / b, 4) for f, (a, b) in sorted(per_form.items())}}
