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
