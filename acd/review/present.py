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


def lot_row(d: dict) -> dict[str, str]:
    """One lot's review facts as display strings (keys are the column headers)."""
    return {
        "lot": str(d.get("lot_id")),
        "mode": str(d.get("mode")),
        "decision": decision_label(d),
        "reviewed": f"{d.get('n')}/{d.get('sampled')}" if d.get("mode") == "label_studio" else f"{d.get('n')} (checks)",
        "compliance": rate(d.get("compliance")),
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
    """The sync's terminal output: one line per lot."""
    lines = []
    for d in decisions:
        r = lot_row(d)
        extra = ", ".join(f"{k} {r[k]}" for k in ("invalid", "skipped", "deleted", "dropped", "corrected") if r[k] != "0")
        lines.append(f"{r['lot']:<28} {r['decision']:<10} compliance {r['compliance']} {r['95% CI']} reviewed {r['reviewed']}"
                     f" gold {r['gold acc.']} agreement {r['agreement']} kappa {r['kappa']} reviewers {r['reviewers']}"
                     + (f" ({extra})" if extra else ""))
    return lines
