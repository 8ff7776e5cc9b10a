"""README.md, the dataset card: a YAML header `datasets` and the Hub understand, then what a consumer needs
to trust the data: counts, plots (assets/*.png), prompt and model provenance, review statistics, licence.

All numbers come from the exported pairs themselves (plus the optional `stats` facts the pipeline passes:
quarantine and check-failure counts, review mode and lot decisions, wall times); a missing fact is shown
as "not recorded", never guessed. Rendering is deterministic: sorted keys, fixed float formatting.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import jinja2
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from acd.export import plots
from acd.export.fsutil import write_if_changed
from acd.paths import EXPORT_TEMPLATES_DIR
from acd.review import present

TEMPLATE_DIR = EXPORT_TEMPLATES_DIR

# Hub task categories per modality (ids from huggingface.js `tasks`); text-generation covers the aligner.
TASKS = {"image": ["image-to-text", "image-text-to-text"], "video": ["video-text-to-text"],
         "audio": ["audio-text-to-text"]}


def size_category(n: int) -> str:
    for bound, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < bound:
            return label
    return "10M<n<100M"


def _counter(con, view: str, *cols: str) -> Counter:
    """Counts of distinct value tuples (nulls as None): a DuckDB group-by over the sorted temp file."""
    names = ", ".join(f'"{c}"' for c in cols)
    g = con.execute(f"select {names}, count(*) from {view} group by {names}").fetchall()
    return Counter({(r[:-1] if len(cols) > 1 else r[0]): r[-1] for r in g})


def _sample_chosen(con) -> list[str]:
    """The chosen captions textstats' variety figures look at, without a list of every caption:
    textstats._sample draws random.Random(0).sample(sorted(texts), SAMPLE), which picks positions from the
    count alone; DuckDB sorts (bytewise, as Python compares str) and returns only the rows at those positions."""
    import random

    from acd.textstats import SAMPLE

    where = "from pairs_s where chosen is not null and chosen <> ''"
    n = con.execute(f"select count(*) {where}").fetchone()[0]
    if n <= SAMPLE:
        return [r[0] for r in con.execute(f"select chosen {where}").fetchall()]
    picks = random.Random(0).sample(range(n), SAMPLE)
    got = dict(con.execute(f"select i, chosen from (select chosen, row_number() over (order by chosen) - 1 as i "
                           f"{where}) where i in (select unnest($picks))", {"picks": picks}).fetchall())
    return [got[i] for i in picks]


class _TextStats:
    """Per-pair word counts, accumulated a batch at a time: what the card's means and histogram need."""

    def __init__(self):
        self.chosen = defaultdict(Counter)  # modality -> {words: pairs}
        self.rejected_sum = defaultdict(int)
        self.by_type = defaultdict(lambda: [0, 0])  # "modality/type" -> [words, pairs] (count_words)
        self.judge: list[pa.Array] = []

    def add(self, t: pa.Table) -> None:
        from acd.checks.length import count_words

        mods = t.column("modality").to_pylist()
        for m, c, r in zip(mods, _words(t.column("chosen")), _words(t.column("rejected"))):
            self.chosen[m][c] += 1
            self.rejected_sum[m] += r
        for m, it, text in zip(mods, t.column("instruction_type").to_pylist(), t.column("chosen").to_pylist()):
            acc = self.by_type[f"{m}/{it}"]
            acc[0] += count_words(text)
            acc[1] += 1
        self.judge.extend(t.column("judge_score").chunks)

    def mean_words_by_type(self) -> dict[str, float]:
        return {k: round(s / n, 1) for k, (s, n) in sorted(self.by_type.items())}

    def judge_mean(self, n: int):
        # One contiguous array, as the whole column was: Arrow's floating-point sum depends on chunking.
        judge = pa.chunked_array(self.judge, pa.float64()).combine_chunks()
        return round(pc.mean(judge).as_py(), 3) if judge.null_count < n else None


def _words(col: pa.ChunkedArray) -> list[int]:
    # Count runs of non-space per row without materialising the words (a split list of 300k captions
    # would be ~20M strings); nulls count as 0 words.
    return pc.fill_null(pc.count_substring_regex(col, r"\S+"), 0).to_pylist()


def summarize(con, src, stats: dict | None, shard_info: dict[str, dict], acm_counts: dict) -> dict[str, Any]:
    """Everything the card shows, as plain data (also handy for the lead's report artifact). Counts are
    DuckDB queries over the sorted pairs and media (acd.export.source); word counts stream in batches."""
    from acd.export import source

    stats = stats or {}
    n = sum(src.rows_by_split.values())
    by_split = _counter(con, "pairs_s", "split")
    by_mt_qcc = _counter(con, "pairs_s", "modality", "instruction_type", "is_qcc")
    mt = sorted({(m, t) for m, t, _ in by_mt_qcc})
    per_type = {(m, t): (by_mt_qcc.get((m, t, False), 0), by_mt_qcc.get((m, t, True), 0)) for m, t in mt}
    by_mod_qcc = _counter(con, "pairs_s", "modality", "is_qcc")
    modalities = sorted({m for m, _ in by_mod_qcc})
    qcc_total = sum(v for (m, q), v in by_mod_qcc.items() if q)
    forms = Counter()
    for key, v in _counter(con, "pairs_s", "length_key").items():
        forms[key.split(":")[0]] += v
    text = _TextStats()
    for t in source.scan(src, columns=["modality", "instruction_type", "chosen", "rejected", "judge_score"]):
        text.add(t)
    words_by_mod = {m: text.chosen[m] for m in modalities}
    prov = _counter(con, "pairs_s", "backend", "model", "model_revision", "prompt_template_id", "prompt_template_hash")
    review_status = _counter(con, "pairs_s", "review_status")
    review_decision = _counter(con, "pairs_s", "review_decision")
    review_facts = dict(stats.get("review") or {})  # run facts (decisions, annotators), not the recipe section
    # A pair reviewed by two people says "a@x,b@x": count people, not strings.
    people = {p.strip() for (r,) in con.execute("select distinct reviewer from pairs_s where reviewer is not null").fetchall()
              if r for p in r.split(",") if p.strip()}
    people |= {a["annotator"] for a in review_facts.get("annotators") or [] if a.get("annotations")}
    reviewers = len(people)
    lots = review_facts.get("lots") or []
    mode = review_facts.get("mode") or ("human" if review_status.get("reviewed") else "auto")
    media_per_mod = _counter(con, "media_s", "modality")
    shards_per = Counter()
    shard_bytes = Counter()
    for info in shard_info.values():
        shards_per[(info["split"], info["modality"])] += 1
        shard_bytes[(info["split"], info["modality"])] += info["bytes"]

    def mean(v: Counter) -> float:  # v: {words: pairs}
        pairs = sum(v.values())
        return round(sum(w * k for w, k in v.items()) / pairs, 1) if pairs else 0.0

    def mean_rejected(m: str) -> float:
        pairs = sum(text.chosen[m].values())
        return round(text.rejected_sum[m] / pairs, 1) if pairs else 0.0

    from acd.checks.measured import catch_rate_sentence
    from acd.textstats import SAMPLE, distinct_ngrams, reference_figures, stock_phrase

    ref = reference_figures()
    ours_by_type = text.mean_words_by_type()
    sample = _sample_chosen(con)

    return {
        "n_pairs": n,
        "splits": dict(sorted(by_split.items())),
        "modalities": modalities,
        "per_type": [{"modality": m, "type": t, "qac": a, "qcc": b, "total": a + b,
                      "chosen_words": ours_by_type.get(f"{m}/{t}"),
                      "official_words": ref["mean_words_by_type"].get(f"{m}/{t}")}
                     for (m, t), (a, b) in per_type.items()],
        "variety": {"sample": SAMPLE, "ours": distinct_ngrams(sample),
                    "official": ref["distinct_3grams_600"], "source": ref["source"],
                    "stock_share": stock_phrase(sample)[1],
                    "stock_share_official": ref.get("stock_5gram_share_600")},
        "per_modality": [{
            "modality": m,
            "pairs": by_mod_qcc.get((m, False), 0) + by_mod_qcc.get((m, True), 0),
            "qcc": by_mod_qcc.get((m, True), 0),
            "qcc_share": round(by_mod_qcc.get((m, True), 0) / max(1, by_mod_qcc.get((m, False), 0) + by_mod_qcc.get((m, True), 0)), 3),
            "media": media_per_mod.get(m, 0),
            "chosen_words": mean(words_by_mod[m]),
            "rejected_words": mean_rejected(m),
        } for m in modalities],
        "qcc_share": round(qcc_total / n, 3) if n else 0.0,
        "length_forms": dict(sorted(forms.items(), key=lambda kv: (-kv[1], kv[0]))),
        "rejection_strategies": dict(sorted(_counter(con, "pairs_s", "rejection_strategy").items(), key=lambda kv: (-kv[1], kv[0]))),
        "provenance": [dict(zip(("backend", "model", "model_revision", "prompt_template_id", "prompt_template_hash"), k), pairs=v)
                       for k, v in sorted(prov.items(), key=lambda kv: tuple(str(x) for x in kv[0]))],
        "licences": dict(sorted(((k or "unspecified"), v) for k, v in _counter(con, "media_s", "licence").items())),
        "sources": dict(sorted(_counter(con, "media_s", "source").items())),
        "check_passed": dict(sorted((str(k), v) for k, v in _counter(con, "pairs_s", "check_passed").items())),
        "judge_mean": text.judge_mean(n),
        "attempts": dict(sorted((str(k), v) for k, v in _counter(con, "pairs_s", "attempts").items())),
        "review_mode": mode,
        "review_status": dict(sorted((str(k), v) for k, v in review_status.items())),
        "review_decision": dict(sorted((str(k), v) for k, v in review_decision.items())),
        "reviewers": reviewers,
        "review": review_facts,
        "lots": lots,
        "lot_rows": [present.lot_row(d) for d in lots],
        "pending_lots": sum(1 for d in lots if d.get("pending")),
        "annotators": [present.annotator_row(a) for a in review_facts.get("annotators") or []],
        "review_totals": {k: sum(int(d.get(k) or 0) for d in lots)
                          for k in ("invalid", "skipped", "deleted", "dropped", "corrected", "refused_corrections")},
        # What "passed automatic checks" is worth (issue 21): the checks' catch and false-alarm rates on the
        # reader-labelled set, and what they find in the official captions; both from committed data files
        # (acd.checks.measured says why not measured here), dated, and marked when the checks changed since.
        "checks_measured": catch_rate_sentence(),
        "reference_checks": _reference_checks(),
        "quarantine": dict(sorted((stats.get("quarantine") or {}).items())),
        "check_failures": dict(sorted((stats.get("check_failures") or {}).items())),
        "wall_times": dict(sorted((stats.get("wall_times") or {}).items())),
        # "Duplicates and contamination" (acd.contamination), the same markdown as the run report's; None when
        # the pipeline passed no run facts.
        "contamination": _contamination_md(stats.get("contamination")),
        "cost": stats.get("cost"),  # acd.cost.card_section: None for the offline backend
        "shards": [{"split": s, "modality": m, "shards": c, "mib": round(shard_bytes[(s, m)] / 2**20, 1)}
                   for (s, m), c in sorted(shards_per.items())],
        "acm": acm_counts,
        "_plot_per_type": per_type,
        "_plot_words": words_by_mod,
    }


def _contamination_md(summary: dict | None) -> str | None:
    from acd.contamination import markdown

    return markdown(summary) if summary else None


def _reference_checks() -> dict | None:
    """schemas/reference_checks.json (`make reference-checks`) as the card shows it, or None if never measured."""
    from acd.checks.measured import REFERENCE_FILE, load, reference_stale

    fig = load(REFERENCE_FILE)
    if not fig or not fig.get("pairs"):
        return None
    return {"pairs": fig["pairs"], "passed": fig["passed"], "pass_pct": f"{100 * fig['pass_rate']:.1f}",
            "measured": fig["measured"], "stale": reference_stale(fig), "source": fig.get("source", ""),
            "kinds": ", ".join(f"{k} {v}" for k, v in fig.get("by_kind", {}).items()),
            "reasons": [{"reason": r["reason"], "count": r["count"], "share": f"{100 * r['share']:.1f}%"}
                        for r in fig.get("reasons", [])]}


def header(summary: dict, recipe) -> dict[str, Any]:
    tasks: list[str] = []
    for m in summary["modalities"]:
        tasks += [t for t in TASKS.get(m, []) if t not in tasks]
    tasks.append("text-generation")
    return {
        "pretty_name": recipe.export.pretty_name or f"AnyCap-style controllable captioning preferences ({recipe.name})",
        "license": dataset_license(recipe),
        "language": ["en"],
        "task_categories": tasks,
        "tags": ["controllable-captioning", "preference", "anycap", "multimodal", "webdataset"],
        "size_categories": [size_category(summary["n_pairs"])],
        "configs": [{
            "config_name": "default",
            "data_files": [{"split": s, "path": f"pairs/{s}-*.parquet"} for s in summary["splits"]],
        }],
    }


def write_assets(summary: dict, out_dir: Path) -> list[str]:
    assets = {
        "assets/pairs_by_type.png": lambda: plots.bar_by_type(summary["_plot_per_type"]),
        "assets/length_forms.png": lambda: plots.bar_simple(summary["length_forms"], "Length-constraint forms"),
        "assets/rejection_strategies.png": lambda: plots.bar_simple(summary["rejection_strategies"], "Rejection strategies"),
        "assets/caption_words.png": lambda: plots.word_histogram(summary["_plot_words"]),
    }
    for rel, make in assets.items():
        write_if_changed(out_dir / rel, make())
    return list(assets)


def dataset_license(recipe) -> str:
    return recipe.export.license or recipe.license or "mit"


def render(summary: dict, recipe, assets: list[str]) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), autoescape=False,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined)
    head = yaml.safe_dump(header(summary, recipe), sort_keys=False, allow_unicode=True, width=1000)
    return env.get_template("card.md.j2").render(
        # The template reads the effective recipe as a mapping (every key present: what the build used).
        header=head, s=summary, recipe=recipe.effective(), assets=assets,
        judge=recipe.checks.judge, bar=recipe.review.compliance_bar,
    )


def write_card(summary: dict, recipe, out_dir: Path) -> list[str]:
    assets = write_assets(summary, out_dir)
    write_if_changed(out_dir / "README.md", render(summary, recipe, assets).encode("utf-8"))
    return ["README.md", *assets]
