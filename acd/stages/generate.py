"""generate: one unit per lot. The backend writes each planned pair's instruction, chosen and rejected
caption, the checks judge them (failures retried up to checks.max_attempts), and the lot's pairs go to
generate/<lot> (dead letters, requests that never succeeded, to deadletter/<lot>, first)."""
from __future__ import annotations

import time
from typing import Any

import pyarrow as pa

from acd.records import PAIR_SCHEMA, conform, rows_to_table
from acd.runstore import REVIEW_PARTS
from acd.stages.base import CPU, DRIVER, IO, Stage, since

DEADLETTER_SCHEMA = pa.schema(
    [
        pa.field("pair_id", pa.string(), nullable=False),
        pa.field("lot_id", pa.string(), nullable=False),
        pa.field("role", pa.string(), nullable=False),
        pa.field("attempt", pa.int32(), nullable=False),
        pa.field("error", pa.string(), nullable=False),
    ]
)
# Parquet schema metadata of a generate part: the digest of the prompt files it was made from.
INPUTS_KEY = b"acd.generation_inputs"


def generate_where(build) -> str:
    # Model backends are I/O-bound and async inside one process; a pool would multiply their per-process
    # in-flight limits and rate pacing (openai) or load the model once per worker (vllm).
    if build.recipe.backend.capabilities.cpu_bound:
        return CPU
    return IO if build.concurrent_lots else DRIVER


class Generate(Stage):
    name, unit, task, retries = "generate", "lot", "generate-lot", 1
    # usage: what each answered request used (acd.cost; model backends), before the lot's generate part
    reads, writes = ("plan", "media_index"), ("deadletter", "usage", "generate")

    def units(self, build, results):
        return results["plan"]

    def where(self, build):
        return generate_where(build)

    def before(self, build):
        text_index(build)  # an unreadable evaluation file stops the build here, before any lot
        if not build.recipe.backend.capabilities.offline:
            prepare_cost(build)
        if build.concurrent_lots:
            warm_up(build)

    def run(self, build, unit):
        return generate(build, unit)

    def after(self, build, executor, result):
        spend = getattr(build.backend, "spend", None)
        if spend is not None:
            spend.flush()
        return result


def prepare_cost(build) -> None:
    """Before a model backend's lots: the plan's estimate (once per run directory: the recalibration compares
    observed usage with it), the run's ledger of dollars paid (earlier runs count against the budget), and a
    price for every model when there is a budget (a budget over unknown prices is no budget)."""
    from acd import cost

    if not (build.run_dir / cost.ESTIMATE_FILE).exists():
        cost.estimate_run(build)
    section = build.recipe.backend
    if section.budget_usd is not None:
        unpriced = sorted({m for m in cost.role_models(section).values() if m and
                           cost.price_for(m, section.prices).input_per_mtok is None})
        if unpriced:
            from acd.errors import AcdError

            raise AcdError(f"backend.budget_usd needs prices for {', '.join(unpriced)}: add backend.prices: "
                           f"{{<model>: {{input_per_mtok: ..., output_per_mtok: ...}}}} (USD per million tokens)")
    spend = getattr(build.backend, "spend", None)
    if spend is not None:
        spend.attach(build.run_dir)
    transport = getattr(build.backend, "batch", None)
    if transport is not None:  # backend.mode: batch keeps its tracker and input files in the run directory
        transport.attach(build.run_dir)


def text_index(build):
    """recipe.decontaminate's evaluation-text index (built once per process, acd.checks.decontam), or None."""
    from acd.checks.decontam import index_for

    return index_for(build.recipe.decontaminate)


def _lot_kind(plan: pa.Table) -> tuple[str, str]:
    return plan.column("modality")[0].as_py(), plan.column("instruction_type")[0].as_py()


def warm_up(build) -> None:
    """Before a model backend's lots start: import the check modules and load the judge's model here, once,
    instead of inside the first lots' checks, where seconds of imports holding the GIL would starve the
    request loop just as every slot is being filled."""
    import acd.checks.lot  # noqa: F401
    import acd.checks.rules  # noqa: F401

    if build.recipe.checks.judge == "offline":
        from acd.checks.judge import load_model

        load_model()
    _warm_checks(build)


def _warm_checks(build) -> None:
    """Check a few of the first lots' pairs once, with stand-in captions, and throw the result away: the
    checks' lazily built tables (fact vocabulary, lemmas, length phrasings) and the judge's first forward
    pass then take their seconds here. Inside the first lots they held the GIL for ~3 s while the request
    loop was filling the slots (measured: the endpoint dropped to 40 of 128 busy slots)."""
    from acd.checks.lot import check_lot

    lots = build.lots()
    if not lots:
        return
    rows = []
    for lot in lots[:8]:  # a few lots: every modality of the build, as the lots are planned per modality
        plan = build.store.read_part("plan", lot)
        rows.extend(plan.slice(0, 2).to_pylist())
    media = {m["media_key"]: m for m in build.media_table(sorted({r["media_key"] for r in rows})).to_pylist()}
    for r in rows:
        r.update(instruction=f"Describe the {r.get('modality') or 'image'} in one sentence.",
                 chosen="A small red ball rolls slowly to the left across the scene.",
                 rejected="A large blue box stands still on the right side.")
    checks = build.recipe.checks
    judge = None
    if checks.judge == "offline":
        from acd.checks.judge import OfflineJudge

        judge = OfflineJudge()  # a throwaway instance: the lots' judges start with empty caches
    else:
        checks = checks.model_copy(update={"judge": "none"})  # a model judge would send requests
    table = pa.Table.from_pylist(rows)
    check_lot(table, checks, judge, groundings={k: m.get("grounding") for k, m in media.items()})
    if judge is not None:
        judge.prefetch([rows[0]["chosen"], rows[0]["instruction"]])


def generation_inputs(build, lot: str) -> str:
    """A digest of what a lot's requests are made from (model backends: the prompt templates of every
    role; grounded: its phrasing files and the writer's code, i.e. its revision). A part made from other
    inputs is stale: the lot is generated again."""
    import hashlib

    modality, itype = _lot_kind(build.store.read_part("plan", lot))
    if build.recipe.backend.capabilities.needs_grounding:  # it writes from its phrasing, not from prompts
        from acd.grounded.phrasing import current_revision

        return hashlib.sha256(f"grounded:{current_revision()}".encode()).hexdigest()[:16]
    else:
        from acd.prompts import template_files

        roles = ["instruct", "chosen", "rejected"]
        if build.recipe.checks.judge == "llm":
            roles.append("judge")
        files = sorted({f for role in roles for f in template_files(role, modality, itype)})
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def lot_state(build, lot: str) -> str:
    """done | missing | deadletters (retried: a healed server completes them) | stale (a prompt edit)."""
    if not build.store.has_part("generate", lot):
        return "missing"
    if build.store.has_part("deadletter", lot) and build.store.read_part("deadletter", lot).num_rows:
        return "deadletters"
    import pyarrow.parquet as pq

    meta = pq.read_schema(build.store.part_path("generate", lot)).metadata or {}
    made_from = meta.get(INPUTS_KEY)
    if made_from is not None and made_from.decode() != generation_inputs(build, lot):
        return "stale"
    return "done"


def invalidate_downstream(build, lot: str) -> None:
    """A lot that is generated again loses its review and decision (automatic or human): they judged other
    captions. Removed before the new part is written, so a crash in between leaves no stale decision."""
    import shutil

    for part in REVIEW_PARTS:
        d = build.run_dir / part / lot
        if d.exists():
            shutil.rmtree(d)


def generate(build, lot: str) -> dict[str, Any]:
    """Generate and check one lot (acd.generate.generate_lot); the generate part is its done-marker, the
    digest of its inputs in the part's metadata (a prompt or writer edit makes it stale)."""
    state = lot_state(build, lot)
    if state == "done":
        return {"lot": lot, "skipped": True}
    from acd.generate import generate_lot

    t: dict[str, float] = {}
    t0 = time.perf_counter()
    plan = build.store.read_part("plan", lot)
    media = build.media_table(sorted(set(plan.column("media_key").to_pylist())))
    inputs = generation_inputs(build, lot)
    t0 = since(t, "media_lookup", t0)
    backend = build.backend
    judge = build.judge
    if judge is not None and type(judge).__name__ == "OfflineJudge":
        # A fresh offline judge (empty embedding cache; the model itself is loaded once per process) per
        # lot: a lot's scores must not depend on which lots this process judged before, because a text's
        # embedding can differ in the last bits with the batch it was embedded in. Resumed, parallel
        # and serial builds then write the same bytes.
        judge = type(judge)()
    t0 = since(t, "setup", t0)
    usage: list | None = None if build.recipe.backend.capabilities.offline else []
    pairs, deadletters = generate_lot(
        plan, media, build.run_dir, backend, build.recipe.checks, judge, timings=t,
        attempt_offset=regeneration_round(build, lot) * build.recipe.checks.max_attempts,
        pairs_in_flight=build.pairs_in_flight() if build.concurrent_lots else 0,
        decontam=text_index(build), usage=usage,
    )
    t0 = since(t, "generate_lot", t0)
    if state != "missing":
        invalidate_downstream(build, lot)
    pairs = conform(pairs, PAIR_SCHEMA)
    pairs = pairs.replace_schema_metadata({**(pairs.schema.metadata or {}), INPUTS_KEY: inputs.encode()})
    build.store.write_part("deadletter", lot, rows_to_table(deadletters, DEADLETTER_SCHEMA))
    from acd.cost import USAGE_STAGE, usage_table

    build.store.write_part(USAGE_STAGE, lot, usage_table(usage or []))
    build.store.write_part("generate", lot, pairs)
    since(t, "part_write", t0)
    passed = sum(1 for v in pairs.column("check_passed").to_pylist() if v)
    return {"lot": lot, "pairs": pairs.num_rows, "passed": passed, "deadletters": len(deadletters), "timings": t,
            "redone": state if state != "missing" else None}


def regeneration_round(build, lot: str) -> int:
    """How many times review sent this lot back (superseded/<lot>/round-k): its attempts start past them."""
    d = build.run_dir / "superseded" / lot
    return len(list(d.glob("round-*"))) if d.exists() else 0
