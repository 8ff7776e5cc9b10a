"""The run report: markdown (Prefect artifact) and HTML (in the output), from DuckDB over the run's parts.

Timings: every driver run appends its stage and component seconds to <run>/timings_history.jsonl
(<run>/timings.json keeps the latest run's). A resumed build did its work over several runs, so the report's
stage table shows wall seconds summed over all runs (and throughput from those), the latest run's seconds
beside them, and a table of the runs themselves: a no-op rerun reads as 0.5 s of nothing, not as
"4,321 pairs/s".
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from acd.atomicio import write_text


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
        "recipe": build.recipe.name,
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
            "select modality, instruction_type, len(regexp_split_to_array(trim(chosen), '\\s+')) as words "
            "from {generate} where chosen is not null"
        ).to_pylist() if has("generate") else [],
        "lots": s("select * from {review_decisions} order by lot_id").to_pylist() if has("review_decisions") else [],
        "annotators": s("select * from {review_annotators} order by annotator").to_pylist() if has("review_annotators") else [],
        "issues": s("select lot_id, kind, task_id, annotator, reason from {review_issues} "
                    "where kind <> 'dropped' order by lot_id, kind, task_id").to_pylist() if has("review_issues") else [],
    }
    from acd.contamination import summarize as contamination

    data["contamination"] = contamination(build.store, build.recipe)
    timing = build.run_dir / "timings.json"
    data["timings"] = json.loads(timing.read_text()) if timing.exists() else {}
    data["history"] = timing_history(build.run_dir)
    # What each stage processed, for throughput: media items in, pairs planned/generated/reviewed, pairs out.
    data["units"] = {stage: (s(f"select count(*) as n from {{{stage}}}").column("n")[0].as_py(), unit)
                     for stage, unit in (("ingest", "media"), ("plan", "pairs"), ("generate", "pairs"), ("review", "pairs"))
                     if has(stage)}
    if data["accepted"]:
        data["units"]["export"] = (sum(r["accepted"] for r in data["accepted"]), "pairs")
    return data


def _fmt(v, spec: str = ".3f") -> str:
    return "–" if v is None else format(v, spec)


HISTORY = "timings_history.jsonl"


def append_timing_history(run_dir: Path, stages: dict) -> None:
    """One line per driver run: {run, finished (UTC), stages: timings.json's mapping}."""
    import time

    path = Path(run_dir) / HISTORY
    n = len(timing_history(run_dir)) + 1
    line = json.dumps({"run": n, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "stages": stages},
                      sort_keys=True)
    with open(path, "a", encoding="utf-8") as f:  # one driver per run dir (the run lock): no interleaving
        f.write(line + "\n")


def timing_history(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / HISTORY
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:  # a line cut by a crash mid-append
            continue
    return out


def _wall(v) -> float | None:
    return v.get("seconds") if isinstance(v, dict) else v


def engine_seconds(timings: dict) -> dict[str, float]:
    """Per stage of one run: the seconds the engine worked (its units' seconds, divided by the worker processes
    that ran them side by side; at most the stage's wall). The rest of a stage's wall is orchestration: the
    driver and executor dispatching, waiting, uneven last units, progress."""
    out = {}
    for stage, v in timings.items():
        if isinstance(v, dict) and "unit_seconds" in v:
            out[stage] = min(v["seconds"], v["unit_seconds"] / max(v.get("workers", 1.0), 1.0))
    return out


def _orchestration_line(timings: dict) -> str:
    engine = engine_seconds(timings)
    wall = sum(_wall(v) or 0.0 for k, v in timings.items() if k in engine)
    if not engine or not wall:
        return ""
    over = wall - sum(engine.values())
    return (f"Latest run: {wall:.1f} s in the stages, of which the engine worked {sum(engine.values()):.1f} s "
            f"(unit seconds per worker process) and orchestration took {over:.1f} s ({100 * over / wall:.1f}%; "
            "interpreter start and this report come on top).\n")


def _stage_rows(timings: dict, units: dict, history: list[dict] | None = None) -> list[dict]:
    """One row per stage: wall seconds over all runs (what a resumed build really took) and in the latest
    run, what the stage processed and how fast (over all runs), and the latest run's component seconds."""
    rows = []
    history = history or [{"stages": timings}]
    stages = list(dict.fromkeys([s for h in history for s in h.get("stages", {})] + list(timings)))
    for stage in stages:
        v = timings.get(stage, {})
        total = sum(_wall(h["stages"][stage]) or 0.0 for h in history if stage in h.get("stages", {}))
        comps = {k: x for k, x in v.items() if k not in ("seconds", "workers")} if isinstance(v, dict) else {}
        n, unit = units.get(stage, (None, ""))
        workers = v.get("workers") if isinstance(v, dict) else None
        rows.append({"stage": stage, "wall s (all runs)": _fmt(total, ".1f"), "workers": _fmt(workers, ".0f"),
                     "processed": f"{n} {unit}" if n is not None else "–",
                     "per second": _fmt(n / total if n is not None and total else None, ",.0f"),
                     "latest run s": _fmt(_wall(v) if stage in timings else None, ".1f"),
                     "components, latest run (s, summed over workers)":
                         ", ".join(f"{k} {x:.1f}" for k, x in comps.items()) or "–"})
    return rows


def _run_rows(history: list[dict]) -> list[dict]:
    rows = []
    for h in history:
        st = h.get("stages", {})
        rows.append({"run": h.get("run"), "finished (UTC)": h.get("finished", "–"),
                     "wall s": _fmt(sum(_wall(v) or 0.0 for v in st.values()), ".1f"),
                     "per stage (s)": ", ".join(f"{k} {_wall(v):.1f}" for k, v in st.items()) or "–"})
    return rows


def _gate_note(lots: list[dict]) -> str:
    """Above the lot table: what its figures are. "compliance" only where people judged the lot; lots gated by
    the checks alone show "passed automatic checks", with the checks' measured catch rate beside it."""
    if not lots:
        return ""
    from acd.review import present

    if not any(present.gate_figure(x).startswith("passed") for x in lots):
        return "Every lot's figure is compliance from human verdicts (Label Studio).\n"
    return present.auto_gate_note() + "\n"


def markdown_report(build, data: dict | None = None) -> str:
    d = data or report_data(build)
    from acd.contamination import markdown as contamination_md
    from acd.review import present

    lots = [present.lot_row(x) for x in d["lots"]]
    annotators = [present.annotator_row(a) for a in d["annotators"]]
    parts = [
        f"# ACD build report: {d['recipe']}\n",
        "## Pairs per modality × instruction type\n", _table(d["counts"], ["modality", "instruction_type", "planned", "passed_checks"]),
        "## Accepted pairs\n", _table(d["accepted"], ["modality", "accepted"]),
        "## Check failures\n", _table(d["check_failures"], ["reason", "n"]),
        "## Quarantine\n", _table(d["quarantine"], ["reason", "n"]),
        "## Duplicates and contamination\n", contamination_md(d["contamination"]),
        "## Review: lot gate\n", _gate_note(d["lots"]), _table(lots, present.COLUMNS),
        "## Review: annotators\n", _table(annotators, present.ANNOTATOR_COLUMNS),
        "## Review: annotations without a verdict, refused corrections\n",
        _table(d["issues"], ["lot_id", "kind", "task_id", "annotator", "reason"]),
    ]
    if d["timings"]:
        history = d.get("history") or []
        parts += ["## Time and throughput per stage\n",
                  _table(_stage_rows(d["timings"], d["units"], history),
                         ["stage", "wall s (all runs)", "workers", "processed", "per second", "latest run s",
                          "components, latest run (s, summed over workers)"]),
                  _orchestration_line(d["timings"])]
        if history:
            parts += ["## Runs of this build\n", _table(_run_rows(history), ["run", "finished (UTC)", "wall s", "per stage (s)"])]
    parts += _cost_section(build)
    return "\n".join(parts)


def _cost_section(build) -> list[str]:
    """Model cost: usage the servers reported per role and modality against the plan's estimate, and the
    dollars paid over every run (acd.cost). Nothing for an offline backend."""
    from acd import cost

    if build.recipe.backend.capabilities.offline:
        return []
    prices = dict(getattr(build.recipe.backend, "prices", {}) or {})
    obs = cost.observed(build.run_dir, prices)["groups"].get("all", {})
    est_path = build.run_dir / cost.ESTIMATE_FILE
    est = cost.merge(json.loads(est_path.read_text())["lots"]) if est_path.exists() else {}
    money = (lambda g: f"{g['usd_online']:.4f}" if g and g["priced"] else "unknown")
    rows = [{"role / modality": k, "requests (est.)": f"{o['requests'] if o else 0} ({e['requests'] if e else '-'})",
             "prompt tokens (est.)": f"{o['prompt_tokens'] if o else 0} ({e['prompt_tokens'] if e else '-'})",
             "completion tokens (est.)": f"{o['completion_tokens'] if o else 0} ({e['completion_tokens'] if e else '-'})",
             "USD (est.)": f"{money(o)} ({money(e)})"}
            for k in sorted(set(obs) | set(est)) for o, e in [(obs.get(k), est.get(k))]]
    paid = cost.ledger(build.run_dir)
    return ["## Model cost\n",
            f"Paid over every run of this directory: {paid.get('usd', 0)} USD for {paid.get('requests', 0)} requests "
            "(server-reported usage x schemas/prices.yaml with the recipe's backend.prices; cached answers cost "
            "nothing). Per role and modality, every answer the dataset's requests got, against the plan's estimate:\n",
            _table(rows, ["role / modality", "requests (est.)", "prompt tokens (est.)", "completion tokens (est.)",
                          "USD (est.)"])]


def _length_plots(lengths: list[dict]) -> dict[str, bytes]:
    """One PNG per modality: chosen-caption words per instruction type (box plots). The Agg Figure (no
    pyplot state) and acd.export.plots' PNG settings: identical data gives identical bytes."""
    from matplotlib.figure import Figure

    from acd.export.plots import MODALITY_COLORS, png_bytes

    by_mod: dict[str, dict[str, list[int]]] = {}
    for r in lengths:
        by_mod.setdefault(r["modality"], {}).setdefault(r["instruction_type"], []).append(r["words"])
    out = {}
    for modality in sorted(by_mod):
        by_type = by_mod[modality]
        names = sorted(by_type)
        fig = Figure(figsize=(max(6.0, 0.6 * len(names) + 2), 4))
        ax = fig.add_subplot(1, 1, 1)
        box = ax.boxplot([by_type[n] for n in names], showfliers=False, patch_artist=True)
        for patch in box["boxes"]:
            patch.set_facecolor(MODALITY_COLORS.get(modality, "#999999"))
        ax.set_xticks(range(1, len(names) + 1), names, rotation=45, ha="right")
        ax.set_ylabel("chosen caption words")
        ax.set_title(f"{modality}: caption length per instruction type")
        fig.tight_layout()
        out[modality] = png_bytes(fig)
    return out


def write_html_report(build, path: Path) -> Path:
    import markdown as md

    d = report_data(build)
    body = md.markdown(markdown_report(build, d), extensions=["tables"])  # one set of queries for both
    plots = "".join(
        f"<h3>{html.escape(m)}</h3><img alt='{html.escape(m)} caption lengths per type' "
        f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
        for m, png in _length_plots(d["lengths"]).items())
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>ACD build report</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 8px}</style></head><body>"
        f"{body}<h2>Caption length distributions</h2>{plots}"
        f"<p>{html.escape(str(build.run_dir))}</p></body></html>"
    )
    write_text(path, page)
    return path
