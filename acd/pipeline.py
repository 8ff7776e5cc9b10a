"""The build's context: a `Build` holds what every stage needs — the typed recipe, the run directory and
its store, the source, the shared backend and the judge — and nothing of the stages' work, which lives
in acd.stages (one module per stage; STAGES gives their order; an executor decides where units run).

Every unit writes immutable parts under <run>/<stage>/<unit>/ and is skipped when its part exists, so a
crashed or killed build resumes where it stopped and a finished build reruns in seconds. A `Build` holds
only the recipe and paths (it pickles), so units can run in threads, processes or on Dask workers.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.compute as pc

from acd.plan import stable_hash
from acd.records import MEDIA_SCHEMA, conform, dumps
from acd.recipe import identity, load_recipe, recipe_from_mapping, recorded_recipe
from acd.runstore import DEDUP_DONE, EXPORTED_TO, MEDIA_INDEX, PLAN_DONE, RECIPE_FILE, RECIPE_WRITTEN, RunStore


def recipe_fingerprint(recipe) -> str:
    """A hash of the recipe as written (Recipe.written), less NOT_IDENTITY: run directories named before the
    recipe had typed defaults keep their names."""
    return stable_hash(dumps(identity(recipe.written)))[:10]


def default_run_dir(recipe, root: str | Path = "runs") -> Path:
    """runs/<name>-<hash of the recipe>: an edited recipe gets a fresh run, an unchanged one resumes."""
    return Path(root) / f"{recipe.name}-{recipe_fingerprint(recipe)}"


_SHARED: dict[str, Any] = {}
_SHARED_LOCK = threading.Lock()


def shared_backend(section, slot_share: float = 1.0):
    """One backend object per (backend section, process): every lot thread of a process sends through the
    same endpoint slots, pacing and request cache, so the recipe's limits hold for the process as a whole."""
    key = dumps({"cfg": section.model_dump(mode="json"), "share": slot_share})
    with _SHARED_LOCK:
        if key not in _SHARED:
            from acd.backends.base import make_backend

            backend = make_backend(section, slot_share=slot_share)
            if section.capabilities.cacheable and section.cache:
                from acd.backends.cache import CachedBackend, RequestCache

                backend = CachedBackend(backend, RequestCache(section.cache_dir))
            _SHARED[key] = backend
        return _SHARED[key]


def last_out_dir(run_dir: str | Path) -> Path | None:
    """Where this run's dataset was last exported (EXPORTED_TO, written by export); None: never exported."""
    path = Path(run_dir) / EXPORTED_TO
    return Path(json.loads(path.read_text())["out_dir"]) if path.exists() else None


class Build:
    def __init__(self, recipe, run_dir: str | Path, out_dir: str | Path | None):
        self.recipe = recipe if not isinstance(recipe, dict) else recipe_from_mapping(recipe)
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
        recipe = recorded_recipe(run_dir)
        if recipe is None:
            raise ValueError(f"{run_dir} has no recorded recipe: it was never built")
        return cls(recipe, run_dir, out_dir)

    def __getstate__(self):  # backends, judges and sources are rebuilt on the worker that needs them
        state = dict(self.__dict__)
        state.update(_backend=None, _judge=None, _source=None, _media_index=None)
        return state

    def _record_recipe(self) -> None:
        """recipe.json (effective) and recipe.written.json; a run directory built from another recipe is
        refused. One recorded before typed recipes (recipe.json as written) is brought up to date."""
        from acd.atomicio import write_text

        path = self.run_dir / RECIPE_FILE
        text = json.dumps(self.recipe.effective(), sort_keys=True, indent=2)
        written = json.dumps(self.recipe.written, sort_keys=True, indent=2)
        if path.exists() and path.read_text() != text:
            if identity(recorded_recipe(self.run_dir).effective()) != identity(self.recipe.effective()):
                raise ValueError(
                    f"{self.run_dir} was built from a different recipe; use a new run directory "
                    "(the default run directory already includes the recipe's hash)"
                )
        if not path.exists() or path.read_text() != text:
            if not (self.run_dir / RECIPE_WRITTEN).exists() and path.exists():
                write_text(self.run_dir / RECIPE_WRITTEN, path.read_text())  # an old run: what it was named by
            write_text(path, text)
        if not (self.run_dir / RECIPE_WRITTEN).exists():
            write_text(self.run_dir / RECIPE_WRITTEN, written)

    @property
    def source(self):
        if self._source is None:
            from acd.sources.factory import make_source

            self._source = make_source(self.recipe.source, self.recipe.seed)
        return self._source

    @property
    def backend(self):
        if self._backend is None:
            self._backend = shared_backend(self.recipe.backend, self.slot_share)
        return self._backend

    @property
    def concurrent_lots(self) -> bool:
        """Whether lots should run many at a time on threads of one process: model backends whose requests
        go through the shared backend loop (their lots wait on the endpoint, not on this CPU)."""
        from acd.backends.base import supports_async

        return not self.recipe.backend.capabilities.cpu_bound and supports_async(self.backend)

    def pairs_in_flight(self) -> int:
        """The budget of unfinished pairs a process's lots share, so every endpoint slot has a pair waiting
        for it: 3 x the slots (a pair has one request out at a time; some wait in backoff or for a retry)."""
        if self.batch_mode:  # a batch line waits hours for its answer, not a slot: every pair is in flight
            return 1 << 30
        slots = sum(int(e.max_in_flight) for e in getattr(self.backend, "endpoints", [])) or 64
        return 3 * slots

    @property
    def batch_mode(self) -> bool:
        return getattr(self.recipe.backend, "mode", "online") == "batch"

    def lot_threads(self) -> int:
        """Threads for a model backend's lots: enough that lots in their tails (stragglers), waiting for or
        in their checks never stop the next lots from starting; each waits on the endpoint, not the CPU."""
        if self.batch_mode:  # every lot asks at once, so a wave holds every lot's requests of one step
            return max(64, len(self.lots()))
        return 64 if self.concurrent_lots else 1

    @property
    def judge(self):
        """checks.judge: offline (the embedding judge), llm (the recipe's model backend in its judge role,
        its requests cached and paced like generation), none."""
        checks = self.recipe.checks
        if self._judge is None and checks.judge == "offline":
            from acd.checks.judge import OfflineJudge

            self._judge = OfflineJudge()
        elif self._judge is None and checks.judge == "llm":
            if self.recipe.backend.capabilities.offline:
                raise ValueError(f"checks.judge=llm needs a model backend (openai or vllm); "
                                 f"{self.recipe.backend.name} has no judge model")
            from acd.backends.llm_judge import LLMCheckJudge

            self._judge = LLMCheckJudge(self.backend, checks.judge_params)
        return self._judge

    def lots(self) -> list[str]:
        """The planned lots (plan/_DONE); [] before plan has run."""
        done = self.run_dir / PLAN_DONE
        return done.read_text().split() if done.exists() else []

    def media_table(self, keys: list[str] | None = None) -> pa.Table:
        """Media rows, one per media_key (the first source row wins: dedup across sources and batches), less
        the keys the dedup stage quarantined (near copies, evaluation overlap: dedup/all, `excluded`)."""
        if self.store.has_part(*MEDIA_INDEX):
            if self._media_index is None:  # read once per process; ~1 KB per item
                self._media_index = self.store.read_part(*MEDIA_INDEX)
            table = self._media_index
            if keys is not None:
                table = table.filter(pc.is_in(table.column("media_key"), pa.array(list(keys), pa.string())))
            return table.sort_by([("modality", "ascending"), ("media_key", "ascending")])
        conds = []
        params = {}
        if keys is not None:
            conds.append("media_key in (select unnest($keys))")
            params["keys"] = list(keys)
        if self.store.has_part(*DEDUP_DONE):
            conds.append("media_key not in (select media_key from {dedup} where excluded)")
        where = ("where " + " and ".join(conds)) if conds else ""
        table = self.store.sql(
            "select * from (select * from {ingest} " + where + ") "
            "qualify row_number() over (partition by media_key order by source, source_id) = 1 "
            "order by modality, media_key",
            **params,
        )
        return conform(table, MEDIA_SCHEMA)

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
    progress: Callable[[str, int, int], None] | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Every stage (acd.stages) from this process: the CLI's path; the Prefect flow runs the same stages.

    Synthetic/folder/manifest source batches and grounded-backend lots run in a pool of ACD_WORKERS
    processes (default: one per core; ACD_WORKERS=1 runs them here), a model backend's lots on threads of
    this process; everything else runs here (acd.local_executor). Stage and component seconds go to
    <run>/timings.json."""
    from acd.local_executor import LocalExecutor
    from acd.stages import drive

    recipe = load_recipe(recipe_name, overrides)
    build = Build(recipe, run_dir or default_run_dir(recipe), out_dir)
    done = drive(build, LocalExecutor(build, workers), progress or (lambda stage, done, total: None))
    return {
        "run_dir": str(build.run_dir),
        "out_dir": str(build.out_dir),
        "lots": len(done["plan"]),
        "decisions": done["review"],
        "manifest": done["export"]["manifest"],
        "seconds": done["seconds"],
        "components": done["components"],
    }
