"""The run report: markdown (Prefect artifact) and HTML (in the output), from DuckDB over the run's parts."""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path


def _table(rows: list[dict], columns: list[str]) -> str:
    if not rows:
        return "_none_\n"
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        out.append("| " + " | ".join(str(r.get(c, "")) for c in columns) + " |")
    return "\n".join(out) + "\n"


def report_data(build) -> dict:
    s = build.store.sql
    has = build.store.has_stage
    data = {
        "recipe": build.recipe["name"],
        "counts": s(
            "select modality, instruction_type, count(*) as planned, "
            "sum(case when check_passed then 1 else 0 end) as passed_checks "
            "from {generate} group by 1, 2 order by 1, 2"
        ).to_pylist() if has("generate") else [],
        "accepted": s(
            "select r.modality, count(*) as accepted from {review} r join {review_decisions} d using (lot_id) "
            "where d.decision = 'accepted' and r.check_passed group by 1 order by 1"
        ).to_pylist() if has("review") else [],
        "check_failures": s(
            "select f as reason, count(*) as n from (select unnest(check_failures) as f from {generate}) group by 1 order by 2 desc"
        ).to_pylist() if has("generate") else [],
        "quarantine": s("select reason, count(*) as n from {quarantine} group by 1 order by 2 desc").to_pylist()
        if has("quarantine") else [],
        "lengths": s(
            "select instruction_type, len(regexp_split_to_array(trim(chosen), '\\s+')) as words "
            "from {generate} where chosen is not null"
        ).to_pylist() if has("generate") else [],
        "lots": s("select * from {review_decisions} order by lot_id").to_pylist() if has("review_decisions") else [],
    }
    timing = build.run_dir / "timings.json"
    data["timings"] = json.loads(timing.read_text()) if timing.exists() else {}
    # What each stage processed, for throughput: media items in, pairs planned/generated/reviewed, pairs out.
    data["units"] = {stage: (s(f"select count(*) as n from {{{stage}}}").column("n")[0].as_py(), unit)
                     for stage, unit in (("ingest", "media"), ("plan", "pairs"), ("generate", "pairs"), ("review", "pairs"))
                     if has(stage)}
    if data["accepted"]:
        data["units"]["export"] = (sum(r["accepted"] for r in data["accepted"]), "pairs")
    return data


def _fmt(v, spec: str = ".3f") -> str:
    return "–" if v is None else format(v, spec)


def _stage_rows(timings: dict, units: dict) -> list[dict]:
    """One row per stage: wall seconds, what it processed and how fast, and its component seconds."""
    rows = []
    for stage, v in timings.items():
        wall = v.get("seconds") if isinstance(v, dict) else v
        comps = {k: x for k, x in v.items() if k not in ("seconds", "workers")} if isinstance(v, dict) else {}
        n, unit = units.get(stage, (None, ""))
        workers = v.get("workers") if isinstance(v, dict) else None
        rows.append({"stage": stage, "wall s": _fmt(wall, ".1f"), "workers": _fmt(workers, ".0f"),
                     "processed": f"{n} {unit}" if n is not None else "–",
                     "per second": _fmt(n / wall if n is not None and wall else None, ",.0f"),
                     "components (s, summed over workers)": ", ".join(f"{k} {x:.1f}" for k, x in comps.items()) or "–"})
    return rows


def markdown_report(build, data: dict | None = None) -> str:
    d = data or report_data(build)
    lots = [
        {"lot": x.get("lot_id"), "mode": x.get("mode"), "measured": x.get("n"), "of": x.get("population"),
         "compliance": _fmt(x.get("compliance")), "95% CI": f"[{_fmt(x.get('ci_low'))}, {_fmt(x.get('ci_high'))}]",
         "decision": x.get("decision")}
        for x in d["lots"]
    ]
    parts = [
        f"# ACD build report: {d['recipe']}\n",
        "## Pairs per modality × instruction type\n", _table(d["counts"], ["modality", "instruction_type", "planned", "passed_checks"]),
        "## Accepted pairs\n", _table(d["accepted"], ["modality", "accepted"]),
        "## Check failures\n", _table(d["check_failures"], ["reason", "n"]),
        "## Quarantine\n", _table(d["quarantine"], ["reason", "n"]),
        "## Review: lot compliance\n", _table(lots, ["lot", "mode", "measured", "of", "compliance", "95% CI", "decision"]),
    ]
    if d["timings"]:
        parts += ["## Time and throughput per stage\n",
                  _table(_stage_rows(d["timings"], d["units"]),
                         ["stage", "wall s", "workers", "processed", "per second", "components (s, summed over workers)"])]
    return "\n".join(parts)


def _length_plot_png(lengths: list[dict]) -> bytes:
    from matplotlib.figure import Figure

    from acd.export.plots import png_bytes  # the deterministic Agg canvas and PNG settings the card's plots use

    by_type: dict[str, list[int]] = {}
    for r in lengths:
        by_type.setdefault(r["instruction_type"], []).append(r["words"])
    names = sorted(by_type)
    fig = Figure(figsize=(10, 4), dpi=80)
    ax = fig.subplots()
    if names:
        ax.boxplot([by_type[n] for n in names], showfliers=False)
        ax.set_xticks(range(1, len(names) + 1), names, rotation=45, ha="right")
    ax.set_ylabel("chosen caption words")
    ax.set_title("Caption length per instruction type")
    fig.tight_layout()
    return png_bytes(fig)


def write_html_report(build, path: Path) -> Path:
    import markdown as md

    d = report_data(build)
    body = md.markdown(markdown_report(build, d), extensions=["tables"])  # one set of queries for both
    png = base64.b64encode(_length_plot_png(d["lengths"])).decode()
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>ACD build report</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 8px}</style></head><body>"
        f"{body}<h2>Caption length distributions</h2><img alt='caption lengths per type' src='data:image/png;base64,{png}'>"
        f"<p>{html.escape(str(build.run_dir))}</p></body></html>"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(page)
    tmp.replace(path)
    return path
