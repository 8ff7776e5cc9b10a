"""The build, stage by stage, as plain Python over the run directory. Prefect only wraps these calls.

    ingest (per source batch) → plan (once) → generate+check (per lot) → review (per lot) → export (once)

Every unit writes immutable parts under <run>/<stage>/<unit>/ and is skipped when its part exists, so a
crashed or killed build resumes where it stopped and a finished build reruns in seconds. A `Build` holds
only the recipe and paths (it pickles), so lot tasks can run in threads, processes or on Dask workers.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.compute as pc

from acd.plan import plan_pairs, stable_hash
from acd.records import MEDIA_SCHEMA, PAIR_SCHEMA, QUARANTINE_SCHEMA, conform, dumps, rows_to_table
from acd.recipe import load_recipe
from acd.runstore import RunStore

Progress = Callable[[str, int, int], None]

DEADLETTER_SCHEMA = pa.schema(
    [
        pa.field("pair_id", pa.string(), nullable=False),
        pa.field("lot_id", pa.string(), nullable=False),
        pa.field("role", pa.string(), nullable=False),
        pa.field("attempt", pa.int32(), nullable=False),
        pa.field("error", pa.string(), nullable=False),
    ]
)



def recipe_fingerprint(recipe: dict[str, Any]) -> str:
    return stable_hash(dumps(recipe))[:10]


def default_run_dir(recipe: dict[str, Any], root: str | Path = "runs") -> Path:
    """runs/<name>-<hash of the recipe>: an edited recipe gets a fresh run, an unchanged one resumes."""
    return Path(root) / f"{recipe['name']}-{recipe_fingerprint(recipe)}"


@dataclass
class StageTimer:
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, dt: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + dt


class Build:
    def __init__(self, recipe: dict[str, Any], run_dir: str | Path, out_dir: str | Path):
        self.recipe = recipe
        self.run_dir = Path(run_dir)
        self.out_dir = Path(out_dir)
        self.store = RunStore(self.run_dir)
        self._backend = None
        self._judge = None
        self._source = None
        self._record_recipe()

    @classmethod
    def from_run_dir(cls, run_dir: str | Path, out_dir: str | Path) -> "Build":
        """Reopen a run from the recipe it recorded (review sync re-exports a run this way)."""
        recipe = json.loads((Path(run_dir) / "recipe.json").read_text())
        return cls(recipe, run_dir, out_dir)

    # --- plumbing ---------------------------------------------------------------------------------
    def __getstate__(self):  # backends, judges and sources are rebuilt on the worker that needs them
        state = dict(self.__dict__)
        state.update(_backend=None, _judge=None, _source=None)
        return state

    def _record_recipe(self) -> None:
        path = self.run_dir / "recipe.json"
        text = json.dumps(self.recipe, sort_keys=True, indent=2)
        if path.exists() and path.read_text() != text:
            raise ValueError(
                f"{self.run_dir} was built from a different recipe; use a new run directory "
                "(the default run directory already includes the recipe's hash)"
            )
        if not path.exists():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(path)

    @property
    def source(self):
        if self._source is None:
            from acd.sources.base import make_source

            self._source = make_source(self.recipe["source"], int(self.recipe["seed"]))
        return self._source

    @property
    def backend(self):
        if self._backend is None:
            from acd.backends.base import make_backend

            cfg = dict(self.recipe["backend"])
            backend = make_backend(cfg)
            if cfg["name"] != "grounded" and cfg.get("cache", True):
                from acd.backends.cache import CachedBackend, RequestCache

                backend = CachedBackend(backend, RequestCache(cfg.get("cache_dir")))
            self._backend = backend
        return self._backend

    @property
    def judge(self):
        cfg = self.recipe.get("checks", {})
        if self._judge is None and cfg.get("judge", "offline") == "offline":
            from acd.checks.judge import OfflineJudge

            self._judge = OfflineJudge()
        return self._judge

    # --- ingest -------------------------------------------------------------------------------------
    def ingest_batches(self) -> list[str]:
        return list(self.source.batches())

    def ingest(self, batch: str) -> dict[str, int]:
        """Ingest one source batch; the media part is the batch's done-marker (written last)."""
        if self.store.has_part("ingest", batch):
            return {"media": self.store.read_part("ingest", batch).num_rows, "skipped": 1}
        result = self.source.read(batch, self.store.media_dir)
        self.store.write_part("quarantine", batch, rows_to_table(result.quarantine, QUARANTINE_SCHEMA))
        self.store.write_part("ingest", batch, rows_to_table(result.media, MEDIA_SCHEMA))
        return {"media": len(result.media), "quarantined": len(result.quarantine), "skipped": 0}

    def media_table(self, keys: list[str] | None = None) -> pa.Table:
        """Media rows, one per media_key (the first source row wins: dedup across sources and batches)."""
        where = ""
        params = {}
        if keys is not None:
            where = "where media_key in (select unnest($keys))"
            params["keys"] = list(keys)
        table = self.store.sql(
            "select * from (select * from {ingest} " + where + ") "
            "qualify row_number() over (partition by media_key order by source, source_id) = 1 "
            "order by modality, media_key",
            **params,
        )
        return conform(table, MEDIA_SCHEMA)

    # --- plan ----------------------------------------------------------------------------------------
    def plan(self) -> list[str]:
        done = self.run_dir / "plan" / "_DONE"
        if done.exists():
            return done.read_text().split()
        plan = plan_pairs(self.media_table(), self.recipe)
        lots = sorted(set(plan.column("lot_id").to_pylist()))
        for lot in lots:
            self.store.write_part("plan", lot, plan.filter(pc.equal(plan.column("lot_id"), lot)))
        tmp = done.with_suffix(".tmp")
        tmp.write_text("\n".join(lots))
        tmp.replace(done)
        return lots

    # --- generate + check -----------------------------------------------------------------------------
    def lot_done(self, lot: str) -> bool:
        if not self.store.has_part("generate", lot):
            return False
        # A lot with dead letters is finished for now but retried on the next run (the cache makes the
        # items that did succeed free), so a healed server completes them.
        return not self.store.has_part("deadletter", lot) or self.store.read_part("deadletter", lot).num_rows == 0

    def generate(self, lot: str) -> dict[str, Any]:
        if self.lot_done(lot):
            return {"lot": lot, "skipped": True}
        from acd.generate import generate_lot

        plan = self.store.read_part("plan", lot)
        media = self.media_table(sorted(set(plan.column("media_key").to_pylist())))
        pairs, deadletters = generate_lot(
            plan, media, self.run_dir, self.backend, self.recipe.get("checks", {}), self.judge
        )
        self.store.write_part("deadletter", lot, rows_to_table(deadletters, DEADLETTER_SCHEMA))
        self.store.write_part("generate", lot, conform(pairs, PAIR_SCHEMA))
        passed = sum(1 for v in pairs.column("check_passed").to_pylist() if v)
        return {"lot": lot, "pairs": pairs.num_rows, "passed": passed, "deadletters": len(deadletters)}

    # --- review ----------------------------------------------------------------------------------------
    def review(self, lot: str) -> dict[str, Any]:
        # review/ and review_decisions/ hold each lot's *current* decision: `acd review sync` replaces the
        # automatic one with the annotators' when Label Studio is configured.
        if self.store.has_part("review", lot) and self.store.has_part("review_decisions", lot):
            return self.store.read_part("review_decisions", lot).to_pylist()[0]
        from acd.review.gate import DECISION_SCHEMA, review_lot

        pairs = self.store.read_part("generate", lot)
        cfg = self.recipe.get("review", {})
        # The automatic gate always runs; with Label Studio configured its decision is provisional and the
        # lot's sample goes to annotators (push and move on: `acd review sync` / sync-reviews decides later).
        reviewed, decision = review_lot(pairs, cfg, int(self.recipe["seed"]))
        if cfg.get("label_studio"):
            from acd.review.stage import push_lot

            decision["pushed"] = push_lot(self.run_dir, pairs, cfg, int(self.recipe["seed"]))
        self.store.write_part("review", lot, conform(reviewed, PAIR_SCHEMA))
        self.store.write_part("review_decisions", lot, rows_to_table([decision], DECISION_SCHEMA))
        return decision

    # --- export ----------------------------------------------------------------------------------------
    def accepted_pairs(self) -> pa.Table:
        table = self.store.sql(
            "select r.* from {review} r join {review_decisions} d using (lot_id) "
            "where d.decision = 'accepted' and r.check_passed order by r.split, r.modality, r.pair_id"
        )
        return conform(table, PAIR_SCHEMA)

    def stats(self) -> dict[str, Any]:
        """Run facts for the card: counts only (no wall times, so an unchanged rerun rewrites nothing)."""
        s = self.store.sql
        has = self.store.has_stage
        quarantine = {r["reason"]: r["n"] for r in s(
            "select reason, count(*) as n from {quarantine} group by reason order by reason").to_pylist()} \
            if has("quarantine") else {}
        failures = {r["reason"]: r["n"] for r in s(
            "select f as reason, count(*) as n from (select unnest(check_failures) as f from {generate}) "
            "group by f order by f").to_pylist()}
        decisions = s("select * from {review_decisions} order by lot_id").to_pylist()
        modes = sorted({d["mode"] for d in decisions})
        return {
            "quarantine": quarantine,
            "check_failures": failures,
            "review": {"mode": "human" if modes == ["label_studio"] else ("mixed" if len(modes) > 1 else "auto"),
                       "lots": decisions},
        }

    def export(self, progress: Progress | None = None) -> dict[str, Any]:
        from acd.export import write_outputs

        pairs = self.accepted_pairs()
        media = self.media_table(sorted(set(pairs.column("media_key").to_pylist())))
        return write_outputs(pairs, media, self.run_dir, self.out_dir, self.recipe, self.stats(), progress)

    def finish(self, seconds: dict[str, float]) -> None:
        """Record this run's stage times and write the HTML run report beside the dataset."""
        from acd.report import write_html_report

        (self.run_dir / "timings.json").write_text(json.dumps({k: round(v, 3) for k, v in seconds.items()}, indent=2))
        write_html_report(self, self.out_dir / "report.html")


def run_build(
    recipe_name: str,
    out_dir: str | Path,
    run_dir: str | Path | None = None,
    overrides: dict | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run every stage in this process (the CLI's path; the Prefect flow fans the same calls out)."""
    from acd import runlock

    recipe = load_recipe(recipe_name, overrides)
    build = Build(recipe, run_dir or default_run_dir(recipe), out_dir)
    runlock.acquire(build.run_dir, driver="cli")
    try:
        return _run_stages(build, progress or (lambda stage, done, total: None))
    finally:
        runlock.release(build.run_dir)


def _run_stages(build: Build, progress: Progress) -> dict[str, Any]:
    timer = StageTimer()

    def stage(name, units, fn):
        t0 = time.perf_counter()
        results = []
        for i, unit in enumerate(units, 1):
            results.append(fn(unit))
            progress(name, i, len(units))
        timer.add(name, time.perf_counter() - t0)
        return results

    stage("ingest", build.ingest_batches(), build.ingest)
    t0 = time.perf_counter()
    lots = build.plan()
    timer.add("plan", time.perf_counter() - t0)
    stage("generate", lots, build.generate)
    decisions = stage("review", lots, build.review)
    t0 = time.perf_counter()
    manifest = build.export(progress)
    timer.add("export", time.perf_counter() - t0)
    build.finish(timer.seconds)
    return {
        "run_dir": str(build.run_dir),
        "out_dir": str(build.out_dir),
        "lots": len(lots),
        "decisions": decisions,
        "manifest": manifest,
        "seconds": timer.seconds,
    }
