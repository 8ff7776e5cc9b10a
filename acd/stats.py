"""Statistics of a built dataset: DuckDB straight over its Parquet files."""
from __future__ import annotations

import json
from pathlib import Path

import duckdb


def _pairs_glob(path: str | Path) -> str:
    path = Path(path)
    return str(path / "pairs" / "*.parquet")


def dataset_stats(path: str | Path, as_json: bool = False) -> str:
    con = duckdb.connect()
    src = f"read_parquet('{_pairs_glob(path)}')"
    total = con.execute(f"select count(*) from {src}").fetchone()[0]
    by_modality = con.execute(
        f"select modality, count(*) n, round(avg(is_qcc::int), 3) qcc_share from {src} group by 1 order by 1"
    ).fetchall()
    by_type = con.execute(
        f"select modality, instruction_type, count(*) n from {src} group by 1, 2 order by 1, 2"
    ).fetchall()
    by_split = con.execute(f"select split, count(*) from {src} group by 1 order by 1").fetchall()
    by_form = con.execute(
        f"select split_part(length_key, ':', 1) form, count(*) from {src} group by 1 order by 1"
    ).fetchall()
    by_strategy = con.execute(f"select rejection_strategy, count(*) from {src} group by 1 order by 1").fetchall()
    words = con.execute(
        f"select instruction_type, round(avg(len(string_split(trim(chosen), ' '))), 1) from {src} group by 1 order by 1"
    ).fetchall()
    con.close()
    data = {
        "pairs": total,
        "by_modality": [{"modality": m, "pairs": n, "qcc_share": q} for m, n, q in by_modality],
        "by_type": [{"modality": m, "type": t, "pairs": n} for m, t, n in by_type],
        "by_split": dict(by_split),
        "length_forms": dict(by_form),
        "rejection_strategies": dict(by_strategy),
        "mean_chosen_words": dict(words),
    }
    if as_json:
        return json.dumps(data, indent=2, sort_keys=True)
    lines = [f"pairs: {total}", "", "modality  pairs   q-c-c share"]
    lines += [f"{m:<9} {n:>6}   {q:.3f}" for m, n, q in by_modality]
    lines += ["", "modality  type          pairs"]
    lines += [f"{m:<9} {t:<13} {n:>5}" for m, t, n in by_type]
    lines += ["", "splits: " + ", ".join(f"{k} {v}" for k, v in by_split)]
    lines += ["length forms: " + ", ".join(f"{k} {v}" for k, v in by_form)]
    lines += ["rejection strategies: " + ", ".join(f"{k} {v}" for k, v in by_strategy)]
    return "\n".join(lines)


def cost_stats(run_dir: str | Path, as_json: bool = False) -> str:
    """A run's model cost: the usage the servers reported per role and modality (usage parts), and the dollars
    paid over every run of the directory (its ledger; answers from the request cache cost nothing)."""
    from acd import cost
    from acd.pipeline import recorded_recipe

    prices = dict(getattr(recorded_recipe(run_dir).backend, "prices", {}) or {})
    obs = cost.observed(run_dir, prices)
    groups = obs["groups"].get("all", {})
    paid = cost.ledger(run_dir)
    rows = [{"role": k.split("/")[0], "modality": k.split("/")[1], "requests": g["requests"],
             "prompt_tokens": g["prompt_tokens"], "completion_tokens": g["completion_tokens"],
             "usd": round(g["usd_online"], 6) if g["priced"] else None} for k, g in sorted(groups.items())]
    data = {"cost": {"by_role_modality": rows, "paid_usd": paid.get("usd"), "paid_requests": paid.get("requests")}}
    if as_json:
        return json.dumps(data, indent=2, sort_keys=True)
    lines = ["", "cost (server-reported usage)", "role      modality  requests  prompt tok  compl. tok        USD"]
    lines += [f"{r['role']:<9} {r['modality']:<8} {r['requests']:>9} {r['prompt_tokens']:>11} {r['completion_tokens']:>11} "
              f"{'unknown' if r['usd'] is None else format(r['usd'], '.4f'):>10}" for r in rows]
    lines.append(f"paid over every run of the directory: {paid.get('usd', 0)} USD for {paid.get('requests', 0)} requests")
    return "\n".join(lines)
