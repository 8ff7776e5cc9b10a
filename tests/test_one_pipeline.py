"""The build's stage order and the review sync path are each written once (issue 15): every driver walks
acd.stages.STAGES, and every review sync goes through acd.review_sync.sync_and_reexport."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import acd
from acd.stages import STAGES, Executor, run_stages

ROOT = Path(acd.__file__).resolve().parents[1]
STAGE_NAMES = ("ingest", "plan", "generate", "review", "export")


def _functions(path: Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def _mentioned(fn: ast.AST) -> set[str]:
    """Stages a function names in code: Build methods called or passed (build.plan, plan.submit(build)) and task
    functions named after them (generate_lot). Strings do not count (results and parts are looked up by name)."""
    out = set()
    for node in ast.walk(fn):
        word = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None
        if word:
            out |= {s for s in STAGE_NAMES if word == s or word.startswith(s + "_")}
    return out


def _called(fn: ast.AST) -> set[str]:
    out = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Call):
            f = node.func
            out.add(f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else "")
    return out


def _sources() -> list[Path]:
    return sorted((ROOT / "acd").rglob("*.py")) + sorted((ROOT / "flows").glob("*.py"))


def test_no_driver_writes_the_stage_order_again():
    """A function naming three or more stages is a stage order of its own; the only one is acd.stages.run. (The
    flow's former _build named ingest_batch, plan, generate_lot, review_lot and export; the CLI's former
    _run_stages build.plan, build.review and build.export.)"""
    offenders = []
    for path in _sources():
        if path == ROOT / "acd" / "stages" / "run.py":
            continue
        for fn in _functions(path):
            hits = _mentioned(fn)
            if len(hits) >= 3:
                offenders.append(f"{path.relative_to(ROOT)}:{fn.lineno} {fn.name} names {sorted(hits)}")
    assert not offenders, "stage order written outside acd/stages/run.py:\n" + "\n".join(offenders)


def test_the_flow_makes_its_tasks_from_the_stage_list():
    import flows.build_acd as flow

    assert [t.name for t in flow.TASKS.values()] == [s.task for s in STAGES if s.task]
    assert [t.retries for t in flow.TASKS.values()] == [s.retries for s in STAGES if s.task]
    # The flow module defines no task of its own: a new stage reaches it through STAGES alone.
    tree = ast.parse(Path(flow.__file__).read_text())
    decorated = [n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)
                 for d in n.decorator_list if getattr(d.func if isinstance(d, ast.Call) else d, "id", None) == "task"]
    assert decorated == [], decorated


@pytest.mark.parametrize("entry", ["acd/cli.py", "flows/sync_reviews.py", "acd/review_webhook.py"])
def test_every_review_sync_goes_through_the_one_path(entry):
    """The CLI, the sync-reviews flow and the webhook call sync_and_reexport and none of its steps themselves."""
    called = set().union(*(_called(fn) for fn in _functions(ROOT / entry)))
    assert "sync_and_reexport" in called
    assert not called & {"sync", "regenerate_rejected", "reexport", "export", "regenerate_and_review"}, called


class Recording(Executor):
    """Runs every unit here, one after another, and records what it was asked to run."""

    def __init__(self):
        self.asked: list[tuple[str, str, int]] = []

    def run_units(self, build, stage, units, where, on_done):
        from acd.stages import call_unit

        self.asked.append((stage.name, where, len(units)))
        outcomes = []
        for i, u in enumerate(units):
            outcomes.append(call_unit(build, stage.name, u))
            on_done(i, outcomes[-1])
        return outcomes

    def run_once(self, build, stage, progress):
        self.asked.append((stage.name, "once", 1))
        return super().run_once(build, stage, progress)


def test_any_executor_runs_the_stages_in_order_and_timings_keep_their_shape(tmp_path):
    from acd.pipeline import Build
    from acd.recipe import load_recipe

    recipe = load_recipe("demo", {"source": {"counts": {"image": 4, "video": 2, "audio": 2}},
                                  "pairs": {"image": 12, "video": 8, "audio": 6}, "lot_size": 8,
                                  "checks": {"judge": "none"}})
    build = Build(recipe, tmp_path / "run", tmp_path / "out")
    seen = []
    ex = Recording()
    done = run_stages(build, ex, lambda stage, n, total: seen.append((stage, n, total)))
    # on_reject=drop: the regenerate and rereview stages are not part of this build
    assert [a[0] for a in ex.asked] == [s.name for s in STAGES if s.name not in ("regenerate", "rereview")]
    where = {name: w for name, w, _ in ex.asked}
    assert (where["ingest"], where["generate"], where["review"]) == ("cpu", "cpu", "driver")  # synthetic, grounded
    count = {name: n for name, _, n in ex.asked}
    assert count["generate"] == count["review"] == len(done["plan"]) > 1
    timings = json.loads((tmp_path / "run" / "timings.json").read_text())
    reported = [s.name for s in STAGES if s.reported and s.active(build)]
    assert list(timings) == reported
    for name in ("ingest", "generate", "review"):  # unit stages: component seconds, busy seconds, processes
        assert {"seconds", "unit_seconds", "workers"} <= set(timings[name]) and timings[name]["workers"] == 1
    assert {"seconds", "queries", "write_outputs"} <= set(timings["export"])
    # Once-stages record the engine's own seconds too (orchestration = stage wall - engine seconds).
    assert set(timings["plan"]) == {"seconds", "unit_seconds", "workers"}
    assert all(timings[s]["unit_seconds"] <= timings[s]["seconds"] + 1e-3 for s in ("plan", "export"))
    # Progress: every reported stage starts at 0 and ends at its total.
    for name in reported:
        mine = [(n, t) for s, n, t in seen if s == name]
        assert mine[0][0] == 0 and mine[-1][0] == mine[-1][1] > 0, (name, mine)
    assert (tmp_path / "out" / "manifest.json").exists()
    # What each stage declares it writes is what the run directory holds: every folder there is some stage's
    # output, and every declared output of a stage that ran exists.
    ran = [s for s in STAGES if s.active(build)]
    declared = {w for s in ran for w in s.writes} - {"out_dir"}
    folders = {p.name for p in (tmp_path / "run").iterdir() if p.is_dir()}
    assert folders == declared, (sorted(folders - declared), sorted(declared - folders))
