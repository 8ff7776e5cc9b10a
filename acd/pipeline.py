"""The build's units of work, as plain Python over the run directory: a `Build` and its stage methods.

The stages' order lives in acd.stages (STAGES); where their units run is an executor's choice
(acd.local_executor for `acd build`, flows/build_acd.py for Prefect and Dask). Every unit writes immutable
parts under <run>/<stage>/<unit>/ and is skipped when its part exists, so a crashed or killed build resumes
where it stopped and a finished build reruns in seconds. A `Build` holds only the recipe and paths (it
pickles), so lot tasks can run in threads, processes or on Dask workers.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from acd.plan import plan_pairs, stable_hash
from acd.records import MEDIA_SCHEMA, PAIR_SCHEMA, QUARANTINE_SCHEMA, conform, dumps, rows_to_table
from acd.recipe import load_recipe
from acd.runstore import RunStore
from acd.stages import Progress

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


def _since(timings: dict[str, float], key: str, t0: float) -> float:
    now = time.perf_counter()
    timings[key] = timings.get(key, 0.0) + (now - t0)
    return now


# Parquet schema metadata of a generate part: the digest of the prompt files it was made from.
INPUTS_KEY = b"acd.generation_inputs"
# A lot's parts that judged its captions; a regenerated lot loses them (Build.invalidate_downstream).
REVIEW_PARTS = ("review_decisions", "review")


def _lot_kind(plan: pa.Table) -> tuple[str, str]:
    return plan.column("modality")[0].as_py(), plan.column("instruction_type")[0].as_py()


_SHARED: dict[str, Any] = {}
_SHARED_LOCK = threading.Lock()


def shared_backend(cfg: dict[str, Any], slot_share: float = 1.0):
    """One backend object per (config, process): every lot thread of a process sends through the same
    endpoint slots, pacing and request cache, so the recipe's limits hold for the process as a whole."""
    key = dumps({"cfg": cfg, "share": slot_share})
    with _SHARED_LOCK:
        if key not in _SHARED:
            from acd.backends.base import make_backend

            cfg = dict(cfg)
            if slot_share != 1.0:
                cfg["slot_share"] = slot_share
            backend = make_backend(cfg)
            if cfg["name"] != "grounded" and cfg.get("cache", True):
                from acd.backends.cache import CachedBackend, RequestCache

                backend = CachedBackend(backend, RequestCache(cfg.get("cache_dir")))
            _SHARED[key] = backend
        return _SHARED[key]


# The media rows of a planned run, deduplicated, in one part (written by plan, before plan/_DONE): lots
# look their media up here instead of scanning every ingest part with DuckDB once per lot.
MEDIA_INDEX = ("media_index", "all")
# Which out dir the run's dataset was last exported to (absolute): where a review sync re-exports by default.
EXPORTED_TO = "exported_to.json"


def last_out_dir(run_dir: str | Path) -> Path | None:
    """Where this run's dataset was last exported (EXPORTED_TO, written by export); None: never exported."""
    path = Path(run_dir) / EXPORTED_TO
    return Path(json.loads(path.read_text())["out_dir"]) if path.exists() else None


class Build:
    def __init__(self, recipe: dict[str, Any], run_dir: str | Path, out_dir: str | Path | None):
        self.recipe = recipe
        self.run_dir = Path(run_dir)
        self.out_dir = Path(out_dir) if out_dir is not None else None  # None: a review sync with nowhere to export
        self.store = RunStore(self.run_dir)
        self._backend = None
        self._judge = None
        self._source = None
        self._media_index = None
        self.slot_share = 1.0  # this process's share of each endpoint's slots and rate (Dask workers < 1)
        self._record_recipe()

    @classmethod
    def from_run_dir(cls, run_dir: str | Path, out_dir: str | Path | None) -> "Build":
        """Reopen a run from the recipe it recorded (review sync re-exports a run this way)."""
        recipe = json.loads((Path(run_dir) / "recipe.json").read_text())
        return cls(recipe, run_dir, out_dir)

    # --- plumbing ---------------------------------------------------------------------------------
    def __getstate__(self):  # backends, judges and sources are rebuilt on the worker that needs them
        state = dict(self.__dict__)
        state.update(_backend=None, _judge=None, _source=None, _media_index=None)
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
            from acd.atomicio import write_text

            write_text(path, text)

    @property
    def source(self):
        if self._source is None:
            from acd.sources.factory import make_source

            self._source = make_source(self.recipe["source"], int(self.recipe["seed"]))
        return self._source

    @property
    def backend(self):
        if self._backend is None:
            self._backend = shared_backend(self.recipe["backend"], self.slot_share)
        return self._backend

    @property
    def concurrent_lots(self) -> bool:
        """Whether lots should run many at a time on threads of one process: model backends whose requests
        go through the shared backend loop (their lots wait on the endpoint, not on this CPU)."""
        from acd.backends.base import supports_async

        return self.recipe["backend"]["name"] != "grounded" and supports_async(self.backend)

    def prepare_concurrent_lots(self) -> None:
        """Before a model backend's lots start: import the check modules and load the judge's model here, once,
        instead of inside the first lots' checks, where seconds of imports holding the GIL would starve the
        request loop just as every slot is being filled."""
        import acd.checks.lot  # noqa: F401
        import acd.checks.rules  # noqa: F401

        if (self.recipe.get("checks") or {}).get("judge", "offline") == "offline":
            from acd.checks.judge import load_model

            load_model()
        self._warm_checks()

    def _warm_checks(self) -> None:
        """Check a few of the first lots' pairs once, with stand-in captions, and throw the result away: the
        checks' lazily built tables (fact vocabulary, lemmas, length phrasings) and the judge's first forward
        pass then take their seconds here. Inside the first lots they held the GIL for ~3 s while the request
        loop was filling the slots (measured: the endpoint dropped to 40 of 128 busy slots)."""
        from acd.checks.lot import check_lot

        lots = self.plan()
        if not lots:
            return
        rows = []
        for lot in lots[:8]:  # a few lots: every modality of the build, as the lots are planned per modality
            plan = self.store.read_part("plan", lot)
            rows.extend(plan.slice(0, 2).to_pylist())
        media = {m["media_key"]: m for m in self.media_table(sorted({r["media_key"] for r in rows})).to_pylist()}
        for r in rows:
            r.update(instruction=f"Describe the {r.get('modality') or 'image'} in one sentence.",
                     chosen="A small red ball rolls slowly to the left across the scene.",
                     rejected="A large blue box stands still on the right side.")
        cfg = dict(self.recipe.get("checks") or {})
        judge = None
        if cfg.get("judge", "offline") == "offline":
            from acd.checks.judge import OfflineJudge

            judge = OfflineJudge()  # a throwaway instance: the lots' judges start with empty caches
        else:
            cfg["judge"] = "none"  # a model judge would send requests
        table = pa.Table.from_pylist(rows)
        check_lot(table, cfg, judge, groundings={k: m.get("grounding") for k, m in media.items()})
        if judge is not None:
            judge.prefetch([rows[0]["chosen"], rows[0]["instruction"]])

    def pairs_in_flight(self) -> int:
        """The budget of unfinished pairs a process's lots share, so every endpoint slot has a pair waiting
        for it: 3 x the slots (a pair has one request out at a time; some wait in backoff or for a retry)."""
        slots = sum(int(e.max_in_flight) for e in getattr(self.backend, "endpoints", [])) or 64
        return 3 * slots

    def lot_threads(self) -> int:
        """Threads for a model backend's lots: enough that lots in their tails (stragglers), waiting for or
        in their checks never stop the next lots from starting; each waits on the endpoint, not the CPU."""
        return 64 if self.concurrent_lots else 1

    @property
    def judge(self):
        """checks.judge: offline (the embedding judge), llm (the recipe's model backend in its judge role,
        its requests cached and paced like generation), none."""
        cfg = self.recipe.get("checks", {})
        kind = cfg.get("judge", "offline")
        if self._judge is None and kind == "offline":
            from acd.checks.judge import OfflineJudge

            self._judge = OfflineJudge()
        elif self._judge is None and kind == "llm":
            if self.recipe["backend"]["name"] == "grounded":
                raise ValueError("checks.judge=llm needs a model backend (openai or vllm); grounded has no judge model")
            from acd.backends.llm_judge import LLMCheckJudge

            self._judge = LLMCheckJudge(self.backend, cfg.get("judge_params"))
        return self._judge

    # --- ingest -------------------------------------------------------------------------------------
    def ingest_batches(self) -> list[str]:
        return list(self.source.batches())

    def ingest(self, batch: str) -> dict[str, int]:
        """Ingest one source batch; the media part is the batch's done-marker (written last)."""
        if self.store.has_part("ingest", batch):
            return {"media": self.store.read_part("ingest", batch).num_rows, "skipped": 1}
        t: dict[str, float] = {}
        t0 = time.perf_counter()
        result = self.source.read(batch, self.store.media_dir)  # decode/synthesise + media file writes
        t0 = _since(t, "source_read", t0)
        quarantine = rows_to_table(result.quarantine, QUARANTINE_SCHEMA)
        media = rows_to_table(result.media, MEDIA_SCHEMA)
        t0 = _since(t, "to_arrow", t0)
        self.store.write_part("quarantine", batch, quarantine)
        self.store.write_part("ingest", batch, media)
        _since(t, "part_write", t0)
        return {"media": len(result.media), "quarantined": len(result.quarantine), "skipped": 0, "timings": t}

    def media_table(self, keys: list[str] | None = None) -> pa.Table:
        """Media rows, one per media_key (the first source row wins: dedup across sources and batches)."""
        if self.store.has_part(*MEDIA_INDEX):
            if self._media_index is None:  # read once per process; ~1 KB per item
                self._media_index = self.store.read_part(*MEDIA_INDEX)
            table = self._media_index
            if keys is not None:
                table = table.filter(pc.is_in(table.column("media_key"), pa.array(list(keys), pa.string())))
            return table.sort_by([("modality", "ascending"), ("media_key", "ascending")])
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
        media = self.media_table()
        # Sorted by key in small row groups: one immutable lookup table for every lot (see MEDIA_INDEX).
        from acd.runstore import write_parquet_atomic

        write_parquet_atomic(media.sort_by("media_key"), self.store.part_path(*MEDIA_INDEX), row_group_size=4096)
        plan = plan_pairs(media, self.recipe)
        lots = sorted(set(plan.column("lot_id").to_pylist()))
        # plan_pairs returns rows sorted by (lot_id, pair_id): each lot is one contiguous slice.
        ids = plan.column("lot_id").to_pylist()
        starts = [i for i in range(len(ids)) if i == 0 or ids[i] != ids[i - 1]] + [len(ids)]
        if [ids[i] for i in starts[:-1]] != lots:  # not sorted after all: filter per lot
            for lot in lots:
                self.store.write_part("plan", lot, plan.filter(pc.equal(plan.column("lot_id"), lot)))
        else:
            for lot, a, b in zip(lots, starts, starts[1:]):
                self.store.write_part("plan", lot, plan.slice(a, b - a))
        from acd.atomicio import write_text

        write_text(done, "\n".join(lots))
        return lots

    # --- generate + check -----------------------------------------------------------------------------
    def generation_inputs(self, lot: str) -> str:
        """A digest of what a lot's requests are made from (model backends: the prompt templates of every
        role; grounded: its phrasing files and the writer's code, i.e. its revision). A part made from other
        inputs is stale: the lot is generated again."""
        import hashlib

        modality, itype = _lot_kind(self.store.read_part("plan", lot))
        if self.recipe["backend"]["name"] == "grounded":
            from acd.grounded.phrasing import current_revision

            return hashlib.sha256(f"grounded:{current_revision()}".encode()).hexdigest()[:16]
        else:
            from acd.prompts import template_files

            roles = ["instruct", "chosen", "rejected"]
            if (self.recipe.get("checks") or {}).get("judge") == "llm":
                roles.append("judge")
            files = sorted({f for role in roles for f in template_files(role, modality, itype)})
        h = hashlib.sha256()
        for f in files:
            h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
        return h.hexdigest()[:16]

    def lot_state(self, lot: str) -> str:
        """done | missing | deadletters (retried: a healed server completes them) | stale (a prompt edit)."""
        if not self.store.has_part("generate", lot):
            return "missing"
        if self.store.has_part("deadletter", lot) and self.store.read_part("deadletter", lot).num_rows:
            return "deadletters"
        import pyarrow.parquet as pq

        meta = pq.read_schema(self.store.part_path("generate", lot)).metadata or {}
        made_from = meta.get(INPUTS_KEY)
        if made_from is not None and made_from.decode() != self.generation_inputs(lot):
            return "stale"
        return "done"

    def lot_done(self, lot: str) -> bool:
        return self.lot_state(lot) == "done"

    def invalidate_downstream(self, lot: str) -> None:
        """A lot that is generated again loses its review and decision (automatic or human): they judged other
        captions. Removed before the new part is written, so a crash in between leaves no stale decision."""
        import shutil

        for stage in REVIEW_PARTS:
            d = self.run_dir / stage / lot
            if d.exists():
                shutil.rmtree(d)

    def generate(self, lot: str) -> dict[str, Any]:
        state = self.lot_state(lot)
        if state == "done":
            return {"lot": lot, "skipped": True}
        from acd.generate import generate_lot

        t: dict[str, float] = {}
        t0 = time.perf_counter()
        plan = self.store.read_part("plan", lot)
        media = self.media_table(sorted(set(plan.column("media_key").to_pylist())))
        inputs = self.generation_inputs(lot)
        t0 = _since(t, "media_lookup", t0)
        backend = self.backend
        judge = self.judge
        if judge is not None and type(judge).__name__ == "OfflineJudge":
            # A fresh offline judge (empty embedding cache; the model itself is loaded once per process) per
            # lot: a lot's scores must not depend on which lots this process judged before, because a text's
            # embedding can differ in the last bits with the batch it was embedded in. Resumed, parallel
            # and serial builds then write the same bytes.
            judge = type(judge)()
        t0 = _since(t, "setup", t0)
        pairs, deadletters = generate_lot(
            plan, media, self.run_dir, backend, self.recipe.get("checks", {}), judge, timings=t,
            attempt_offset=self.regeneration_round(lot) * int(self.recipe.get("checks", {}).get("max_attempts", 3)),
            pairs_in_flight=self.pairs_in_flight() if self.concurrent_lots else 0,
        )
        t0 = _since(t, "generate_lot", t0)
        if state != "missing":
            self.invalidate_downstream(lot)
        pairs = conform(pairs, PAIR_SCHEMA)
        pairs = pairs.replace_schema_metadata({**(pairs.schema.metadata or {}), INPUTS_KEY: inputs.encode()})
        self.store.write_part("deadletter", lot, rows_to_table(deadletters, DEADLETTER_SCHEMA))
        self.store.write_part("generate", lot, pairs)
        _since(t, "part_write", t0)
        passed = sum(1 for v in pairs.column("check_passed").to_pylist() if v)
        return {"lot": lot, "pairs": pairs.num_rows, "passed": passed, "deadletters": len(deadletters), "timings": t,
                "redone": state if state != "missing" else None}

    # --- review ----------------------------------------------------------------------------------------
    def review(self, lot: str) -> dict[str, Any]:
        # review/ and review_decisions/ hold each lot's *current* decision: `acd review sync` replaces the
        # automatic one with the annotators' when Label Studio is configured.
        cfg = self.recipe.get("review", {})
        if self.store.has_part("review", lot) and self.store.has_part("review_decisions", lot):
            if cfg.get("label_studio"):  # a push that found Label Studio down is retried now
                from acd.review.stage import retry_queued_lot

                retry_queued_lot(self.run_dir, lot, cfg)
            return self.store.read_part("review_decisions", lot).to_pylist()[0]
        from acd.review.gate import DECISION_SCHEMA, review_lot

        pairs = self.store.read_part("generate", lot)
        # The automatic gate always runs; with Label Studio configured its decision is provisional and the
        # lot's sample goes to annotators (push and move on: `acd review sync` / sync-reviews decides later).
        reviewed, decision = review_lot(pairs, cfg, int(self.recipe["seed"]))
        if cfg.get("label_studio"):
            from acd.review.stage import push_or_queue

            # Label Studio down: queued (retried by the next build or sync), the automatic decision stands.
            decision["pushed"] = push_or_queue(self.run_dir, pairs, cfg, int(self.recipe["seed"]))
            if (cfg["label_studio"] or {}).get("webhook_url"):
                from acd.review.registry import register_run

                # Syncs the webhook starts then also re-export this build's dataset.
                register_run(self.run_dir, cfg, out_dir=self.out_dir.resolve() if self.out_dir else None)
        self.store.write_part("review", lot, conform(reviewed, PAIR_SCHEMA))
        self.store.write_part("review_decisions", lot, rows_to_table([decision], DECISION_SCHEMA))
        return decision

    # --- regeneration of lots review rejected ----------------------------------------------------------
    def regeneration_round(self, lot: str) -> int:
        d = self.run_dir / "superseded" / lot
        return len(list(d.glob("round-*"))) if d.exists() else 0

    def regenerate_rejected(self) -> list[str]:
        """review.on_reject=regenerate: a rejected lot's parts move to superseded/<lot>/round-k and the lot is
        generated again with fresh attempts (new wording), then reviewed again (pushed again with Label
        Studio). At most review.max_regenerations rounds per lot; after that the lot stays rejected (dropped).
        """
        from acd.review.config import review_config

        rounds = int(review_config(self.recipe)["max_regenerations"])
        if not self.store.has_stage("review_decisions"):
            return []
        redo = []
        for d in self.store.sql("select lot_id, decision, action from {review_decisions} order by lot_id").to_pylist():
            if d["decision"] != "rejected" or d["action"] != "regenerate":
                continue
            k = self.regeneration_round(d["lot_id"])
            if k >= rounds:
                continue
            dest = self.run_dir / "superseded" / d["lot_id"] / f"round-{k}"
            dest.mkdir(parents=True, exist_ok=True)
            # Decisions first: a crash mid-move must not leave a decision standing without its pairs.
            for stage in ("review_decisions", "review", "deadletter", "generate"):
                src = self.run_dir / stage / d["lot_id"]
                if src.exists():
                    src.rename(dest / stage)
            redo.append(d["lot_id"])
        for lot in redo:
            self.generate(lot)
            self.review(lot)
        return redo

    def regenerate_and_review(self) -> list[dict[str, Any]] | None:
        """The build's regenerate stage: regenerate_rejected, then every lot's current decision (None when no
        lot was regenerated: the review stage's decisions stand)."""
        if not self.regenerate_rejected():
            return None
        return [self.review(lot) for lot in self.plan()]

    # --- export ----------------------------------------------------------------------------------------
    def accepted_pairs(self) -> pa.Table:
        table = self.store.sql(
            "select r.* from {review} r join {review_decisions} d using (lot_id) "
            "where d.decision = 'accepted' and r.check_passed order by r.split, r.modality, r.pair_id"
        )
        return conform(table, PAIR_SCHEMA)

    def why_nothing_accepted(self) -> str:
        """One line for a build with nothing to export: what happened to the planned pairs."""
        g = self.store.sql("select count(*) as n, count(*) filter (where check_passed) as passed from {generate}"
                           ).to_pylist()[0]
        top = self.store.sql("select f, count(*) as n from (select unnest(check_failures) as f from {generate}) "
                             "group by f order by n desc, f limit 3").to_pylist()
        rejected = self.store.sql("select count(*) as n from {review_decisions} where decision <> 'accepted'"
                                  ).to_pylist()[0]["n"] if self.store.has_stage("review_decisions") else 0
        reasons = ", ".join(f"{r['f']} ({r['n']})" for r in top) or "none recorded"
        return (f"no accepted pairs to export: {g['n']} planned, {g['passed']} passed the checks, {rejected} lot(s) "
                f"not accepted; most common failures: {reasons}. See {self.run_dir}/deadletter and rerun after the fix")

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
        human = [d["mode"] == "label_studio" and not d.get("pending") for d in decisions]
        annotators = s("select * from {review_annotators} order by annotator").to_pylist() if has("review_annotators") else []
        return {
            "quarantine": quarantine,
            "check_failures": failures,
            # human: every lot decided by annotators; mixed: some still on the automatic decision (pending).
            "review": {"mode": "human" if human and all(human) else ("mixed" if any(human) else "auto"),
                       "lots": decisions, "annotators": annotators},
        }

    def export(self, progress: Progress | None = None) -> dict[str, Any]:
        """Write the dataset to out_dir; returns its manifest."""
        return self.export_stage(progress)["manifest"]

    def export_stage(self, progress: Progress | None = None) -> dict[str, Any]:
        """The export stage: {"manifest": ..., "timings": component seconds} (acd.stages reads the timings)."""
        from acd.export import write_outputs

        if self.out_dir is None:
            raise ValueError(f"{self.run_dir}: no out dir to export to")
        t: dict[str, float] = {}
        t0 = time.perf_counter()
        pairs = self.accepted_pairs()
        if pairs.num_rows == 0:
            from acd.errors import NothingToExport

            raise NothingToExport(self.why_nothing_accepted())
        media = self.media_table(sorted(set(pairs.column("media_key").to_pylist())))
        stats = self.stats()
        t0 = _since(t, "queries", t0)
        manifest = write_outputs(pairs, media, self.run_dir, self.out_dir, self.recipe, stats, progress)
        _since(t, "write_outputs", t0)
        from acd.atomicio import write_text

        write_text(self.run_dir / EXPORTED_TO, json.dumps({"out_dir": str(self.out_dir.resolve())}))
        return {"manifest": manifest, "timings": t}

    def reexport(self) -> dict[str, Any]:
        """After a review sync (acd.review_sync; after regenerate_rejected): export again, so rejected lots
        leave the dataset and corrections enter it, and rewrite the run report with the new decisions."""
        from acd.report import write_html_report

        manifest = self.export()
        write_html_report(self, self.out_dir / "report.html")
        return manifest

    def finish(self, seconds: dict[str, float], components: dict[str, dict[str, float]] | None = None) -> None:
        """Record this run's stage times and write the HTML run report beside the dataset.

        timings.json: {stage: seconds} or, with components, {stage: {"seconds": wall, <component>: s, ...}}
        (component seconds are summed over the stage's units and worker processes).
        """
        from acd.report import write_html_report

        if components:
            data: dict[str, Any] = {}
            for k, v in seconds.items():
                data[k] = {"seconds": round(v, 3), **{c: round(x, 3) for c, x in sorted(components.get(k, {}).items())}}
        else:
            data = {k: round(v, 3) for k, v in seconds.items()}
        from acd.atomicio import write_text
        from acd.report import append_timing_history

        write_text(self.run_dir / "timings.json", json.dumps(data, indent=2))  # the latest run

        append_timing_history(self.run_dir, data)  # every run: a resumed build's report adds them up
        write_html_report(self, self.out_dir / "report.html")


def run_build(
    recipe_name: str,
    out_dir: str | Path,
    run_dir: str | Path | None = None,
    overrides: dict | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Every stage (acd.stages) from this process: the CLI's path; the Prefect flow runs the same stages.

    Synthetic/folder/manifest source batches and grounded-backend lots run in a pool of ACD_WORKERS
    processes (default: one per core; ACD_WORKERS=1 runs them here), a model backend's lots on threads of
    this process; everything else runs here (acd.local_executor). Stage and component seconds go to
    <run>/timings.json."""
    from acd import runlock
    from acd.local_executor import LocalExecutor
    from acd.stages import run_stages

    recipe = load_recipe(recipe_name, overrides)
    build = Build(recipe, run_dir or default_run_dir(recipe), out_dir)
    runlock.acquire(build.run_dir, driver="cli")
    try:
        from acd.atomicio import sweep_dead_temps

        sweep_dead_temps(build.run_dir, build.out_dir)  # a killed writer's half files (only the lock holder sweeps)
        done = run_stages(build, LocalExecutor(build, workers), progress or (lambda stage, done, total: None))
    finally:
        runlock.release(build.run_dir)
    return {
        "run_dir": str(build.run_dir),
        "out_dir": str(build.out_dir),
        "lots": len(done["plan"]),
        "decisions": done["review"],
        "manifest": done["export"]["manifest"],
        "seconds": done["seconds"],
        "components": done["components"],
    }
