"""How review numbers are shown (sync output, the sync-reviews artifact, report.html, the dataset card):
one place for rounding and for what a lot row says, so the four agree."""
from __future__ import annotations


def rate(v: float | None, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def interval(lo: float | None, hi: float | None, digits: int = 3) -> str:
    return "–" if lo is None or hi is None else f"[{lo:.{digits}f}, {hi:.{digits}f}]"


def decision_label(d: dict) -> str:
    """The lot's decision; "accepted (auto; human: needs_more)" while annotators have measured the lot
    but not decided it (the automatic decision stands meanwhile; mode "auto" says the same for a lot no
    annotator has answered yet)."""
    if d.get("pending") and d.get("human_decision"):
        return f"{d.get('decision')} (auto; human: {d.get('human_decision')})"
    return str(d.get("decision"))


def _auto(d: dict) -> bool:
    """The lot's figure comes from the automatic checks alone (mode auto: no valid human verdict yet)."""
    return d.get("mode") != "label_studio"


def gate_figure(d: dict) -> str:
    """"passed automatic checks 1.000 [0.956, 1.000]" or "compliance 0.927 [0.885, 0.954]" (human verdicts)."""
    name = "passed automatic checks" if _auto(d) else "compliance"
    return f"{name} {rate(d.get('compliance'))} {interval(d.get('ci_low'), d.get('ci_high'))}"


def lot_row(d: dict) -> dict[str, str]:
    """One lot's review facts as display strings (keys are the column headers)."""
    return {
        "lot": str(d.get("lot_id")),
        "mode": str(d.get("mode")),
        "decision": decision_label(d),
        "reviewed": f"{d.get('n')}/{d.get('sampled')}" if d.get("mode") == "label_studio" else f"{d.get('n')} (checks)",
        # A lot no person has judged shows the share of its pairs that passed automatic checks, never as
        # compliance: blind readers found 69% of such pairs compliant where this share said 1.000 (issue 21).
        "passed automatic checks": rate(d.get("compliance")) if _auto(d) else "–",
        "compliance": "–" if _auto(d) else rate(d.get("compliance")),
        "95% CI": interval(d.get("ci_low"), d.get("ci_high")),
        "gold acc.": rate(d.get("gold_accuracy")),
        "agreement": rate(d.get("agreement")),
        "kappa": rate(d.get("kappa")),
        "reviewers": "–" if d.get("reviewers") is None else str(d.get("reviewers")),
        "invalid": str(d.get("invalid") or 0),
        "skipped": str(d.get("skipped") or 0),
        "deleted": str(d.get("deleted") or 0),
        "dropped": str(d.get("dropped") or 0),
        "corrected": str(d.get("corrected") or 0),
    }


COLUMNS = list(lot_row({}).keys())


def annotator_row(a: dict) -> dict[str, str]:
    """One annotator (review_annotators row) as display strings."""
    return {"annotator": str(a.get("annotator")), "verdicts": str(a.get("annotations") or 0),
            "gold caught": f"{a.get('gold_caught') or 0}/{a.get('gold_seen') or 0}",
            "gold accuracy": rate(a.get("gold_accuracy")), "skipped": str(a.get("skipped") or 0),
            "invalid": str(a.get("invalid") or 0)}


ANNOTATOR_COLUMNS = list(annotator_row({}).keys())


def markdown_table(rows: list[dict[str, str]], columns: list[str] | None = None) -> str:
    cols = columns or COLUMNS
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(r.get(c, "") for c in cols) + " |" for r in rows]
    return "\n".join(out)


def text_lines(decisions: list[dict]) -> list[str]:
    """The sync's terminal output: one line per lot; when a lot has no human verdict, a closing line with the
    checks' measured catch rate (what "passed automatic checks" is worth)."""
    lines = []
    for d in decisions:
        r = lot_row(d)
        extra = ", ".join(f"{k} {r[k]}" for k in ("invalid", "skipped", "deleted", "dropped", "corrected") if r[k] != "0")
        lines.append(f"{r['lot']:<28} {r['decision']:<10} {gate_figure(d)} reviewed {r['reviewed']}"
                     f" gold {r['gold acc.']} agreement {r['agreement']} kappa {r['kappa']} reviewers {r['reviewers']}"
                     + (f" ({extra})" if extra else ""))
    if any(_auto(d) for d in decisions):
        lines.append(auto_gate_note())
    return lines


def auto_gate_note() -> str:
    """What a lot's "passed automatic checks" figure is and is not, with the checks' measured catch rate."""
    from acd.checks.measured import catch_rate_sentence

    return ("Lots without a human verdict show the share of pairs that passed automatic checks, not compliance. "
            + catch_rate_sentence())
