"""review.on_reject=regenerate: a lot the gate rejects is generated again with new wording, once."""
from acd.pipeline import Build
from acd.recipe import load_recipe
from acd.stages.export import reexport
from acd.stages.generate import generate
from acd.stages.ingest import ingest
from acd.stages.plan import plan
from acd.stages.regenerate import regenerate_rejected
from acd.stages.review import review

OVERRIDES = {
    "source": {"counts": {"image": 6, "video": 1, "audio": 1}},
    "pairs": {"image": 18, "video": 0, "audio": 0},
    "lot_size": 32,
    "checks": {"judge": "none"},
    # A bar no lot can clear, so every lot is rejected and regenerated (max_regenerations rounds).
    "review": {"compliance_bar": 1.01, "on_reject": "regenerate", "max_regenerations": 1},
}


def test_rejected_lots_are_regenerated_with_new_captions_once(tmp_path):
    run = tmp_path / "run"
    recipe = load_recipe("demo", OVERRIDES)
    build = Build(recipe, run, tmp_path / "out")
    for batch in build.source.batches():
        ingest(build, batch)
    lots = plan(build)
    first = {}
    for lot in lots:
        generate(build, lot)
        assert review(build, lot)["decision"] == "rejected"
        first.update({r["pair_id"]: r["chosen"] for r in build.store.read_part("generate", lot).to_pylist()})

    assert sorted(regenerate_rejected(build)) == lots
    for lot in lots:
        assert (run / "superseded" / lot / "round-0" / "generate").exists()
        rows = build.store.read_part("generate", lot).to_pylist()
        planned = set(build.store.read_part("plan", lot).column("pair_id").to_pylist())
        assert {r["pair_id"] for r in rows} == planned  # same pairs, nothing lost or added
        changed = sum(r["chosen"] != first[r["pair_id"]] for r in rows)
        assert changed >= 0.8 * len(rows), "regeneration must write new captions"
        assert min(r["attempts"] for r in rows) > 3  # attempts continue past the first round's
    assert regenerate_rejected(build) == []  # max_regenerations reached: the lots stay rejected (dropped)



def test_reexport_after_a_human_decision_drops_the_lot_and_rewrites_the_report(tmp_path):
    import pyarrow as pa

    from acd.review.gate import DECISION_SCHEMA

    overrides = {**OVERRIDES, "pairs": {"image": 60, "video": 0, "audio": 0}, "lot_size": 8,
                 "review": {"compliance_bar": 0.95}}
    build = Build(load_recipe("demo", overrides), tmp_path / "run", tmp_path / "out")
    for batch in build.source.batches():
        ingest(build, batch)
    lots = plan(build)
    for lot in lots:
        generate(build, lot)
        review(build, lot)
    first = reexport(build)
    auto_page = (tmp_path / "out" / "report.html").read_text()
    assert "<td>label_studio</td>" not in auto_page and auto_page.count("<td>accepted</td>") == len(lots)

    # What sync() leaves behind when annotators reject a lot: its decision part says so.
    lot = lots[0]
    row = build.store.read_part("review_decisions", lot).to_pylist()[0]
    row.update(mode="label_studio", n=8, compliant=6, compliance=0.75, ci_low=0.41, ci_high=0.93,
               decision="rejected", action="drop")
    build.store.write_part("review_decisions", lot, pa.Table.from_pylist([row], DECISION_SCHEMA))
    lost = sum(bool(r["check_passed"]) for r in build.store.read_part("review", lot).to_pylist())
    manifest = reexport(build)
    page = (tmp_path / "out" / "report.html").read_text()
    assert manifest["counts"]["pairs"] == first["counts"]["pairs"] - lost and lost > 0
    assert f"<td>{lot}</td>\n<td>label_studio</td>" in page and "<td>[0.410, 0.930]</td>" in page
    assert page.count("<td>rejected</td>") == 1
