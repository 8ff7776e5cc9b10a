"""The generate stage's pair chains (async backends), checked on a real planned lot with a scripted backend:
when each request starts and ends, and what the rows say.

- chosen and rejected are sent side by side once the instruction is back (neither prompt reads the other);
- a pair that fails its own checks is asked again at once, inside its chain, not after its whole lot;
- instructions are served before captions when requests wait for a slot (priority).
The OpenAI-compatible path end to end (HTTP, faults, the build) is tests/test_generation_build.py.
"""
from __future__ import annotations

import asyncio
import time

import pytest

from acd.backends.base import GenResult

CLEAN = "The picture shows a calm scene in soft, even light."
REJECTED = "The picture shows a busy street full of people at night."
REFUSAL = "I'm sorry, but I can't help with describing this picture."


class ScriptedBackend:
    """An async backend whose latency and answer depend on the request: `slow` pairs take 0.3 s per request,
    others 0.02 s; `refuse` pairs answer their first chosen caption with a refusal (a rule failure)."""

    name, model, model_revision, params = "scripted", "m", "r1", {}

    def __init__(self, slow: set[str], refuse: set[str]):
        self.slow, self.refuse = slow, refuse
        self.log: list[tuple[float, str, str, str, int]] = []  # (time, start|end, pair_id, role, attempt)

    async def agenerate(self, req):
        pid, attempt = req.pair["pair_id"], req.params["attempt"]
        self.log.append((time.monotonic(), "start", pid, req.role, attempt))
        await asyncio.sleep(0.3 if pid in self.slow else 0.02)
        self.log.append((time.monotonic(), "end", pid, req.role, attempt))
        text = {"instruct": "Describe the picture in one sentence.", "chosen": CLEAN, "rejected": REJECTED}[req.role]
        if req.role == "chosen" and pid in self.refuse and attempt == 0:
            text = REFUSAL
        return GenResult(req.request_id, "ok", text=text, backend=self.name, model=self.model,
                         model_revision=self.model_revision)

    def at(self, what: str, pid: str, role: str, attempt: int = 0) -> float:
        return next(t for t, w, p, r, a in self.log if (w, p, r, a) == (what, pid, role, attempt))


@pytest.fixture(scope="module")
def lot(tmp_path_factory):
    from acd.pipeline import Build
    from acd.recipe import load_recipe
    from acd.stages.ingest import ingest
    from acd.stages.plan import plan

    tmp = tmp_path_factory.mktemp("chains")
    recipe = load_recipe("demo", {"source": {"counts": {"image": 3, "video": 0, "audio": 0}},
                                  "pairs": {"image": 36, "video": 0, "audio": 0}, "qcc_share": 0.0,
                                  "length_control_share": 0.0, "lot_size": 64, "checks": {"judge": "none"}})
    build = Build(recipe, tmp / "run", tmp / "out")
    for batch in build.source.batches():
        ingest(build, batch)
    plan = max((build.store.read_part("plan", lot) for lot in plan(build)), key=lambda t: t.num_rows)
    media = build.media_table(sorted(set(plan.column("media_key").to_pylist())))
    # as real media: no grounding, so the scripted captions are held only to what the instructions name
    # (with a grounding the coverage check rightly fails a caption that says nothing about the picture)
    import pyarrow as pa

    i = media.schema.get_field_index("grounding")
    media = media.set_column(i, "grounding", pa.nulls(media.num_rows, pa.string()))
    return plan, media, build.run_dir


def test_captions_side_by_side_and_a_failing_pair_asked_again_inside_its_chain(lot):
    from acd.generate import generate_lot

    plan, media, run_dir = lot
    ids = plan.column("pair_id").to_pylist()
    assert len(ids) >= 3
    fast_refuser, slow = ids[0], set(ids[1:])
    backend = ScriptedBackend(slow=slow, refuse={fast_refuser})
    pairs, deadletters = generate_lot(plan, media, run_dir, backend, {"max_attempts": 3, "judge": "none"},
                                      pairs_in_flight=64)
    assert deadletters == []
    rows = {r["pair_id"]: r for r in pairs.to_pylist()}
    assert all(rows[p]["check_passed"] for p in ids), {p: rows[p]["check_failures"] for p in ids}
    assert rows[fast_refuser]["attempts"] == 2 and rows[fast_refuser]["chosen"] == CLEAN
    assert all(rows[p]["attempts"] == 1 for p in slow)

    for pid in ids:
        instruct_end = backend.at("end", pid, "instruct")
        starts = [backend.at("start", pid, role) for role in ("chosen", "rejected")]
        ends = [backend.at("end", pid, role) for role in ("chosen", "rejected")]
        assert min(starts) >= instruct_end  # the captions need the instruction
        assert max(starts) < min(ends)  # ... and run side by side
    # The refused pair's second attempt started while the slow pairs' first attempts were still out: it did
    # not wait for its lot to be generated and checked.
    second_try = backend.at("start", fast_refuser, "instruct", attempt=1)
    assert second_try < min(backend.at("end", p, "chosen") for p in slow)


def test_instructions_are_served_before_captions_of_the_same_lot():
    from acd.generate import _request

    pair = {"pair_id": "p1", "seed": 3}

    from acd.recipe_model import GroundedBackend

    class Grounded:  # a writer from grounding: no rendering needed for the priority
        capabilities = GroundedBackend.capabilities

    ranks = {role: _request(role, pair, {}, 0, Grounded(), priority=7).priority
             for role in ("instruct", "chosen", "rejected")}
    assert ranks["instruct"] == 7
    assert ranks["chosen"] == ranks["rejected"] > ranks["instruct"]
    # ... and an older lot's captions still go before a younger lot's captions
    assert _request("chosen", pair, {}, 0, Grounded(), priority=6).priority < ranks["chosen"]
