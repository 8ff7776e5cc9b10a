import pyarrow as pa

from acd.plan import plan_pairs
from acd.recipe import load_recipe
from acd.taxonomy import load_taxonomy


def _media(n_per_modality=20):
    rows = []
    for modality in ("image", "video", "audio"):
        for i in range(n_per_modality):
            rows.append({"media_key": f"{modality[0]}{i:04d}" + "0" * 58, "modality": modality})
    return pa.Table.from_pylist(rows)


def test_plan_covers_every_combination_and_length_form():
    recipe = load_recipe("demo")
    plan = plan_pairs(_media(), recipe)
    tax = load_taxonomy()
    assert plan.num_rows == sum(recipe.pairs.model_dump().values())
    combos = set(zip(plan.column("modality").to_pylist(), plan.column("instruction_type").to_pylist()))
    assert combos == set(tax.combinations())
    forms = {k.split(":")[0] for k in plan.column("length_key").to_pylist()}
    assert forms == set(tax.length_forms) | {"none"}


def test_plan_quotas_ids_and_splits():
    recipe = load_recipe("demo")
    plan = plan_pairs(_media(), recipe).to_pylist()
    ids = [r["pair_id"] for r in plan]
    assert len(ids) == len(set(ids))
    qcc = sum(r["is_qcc"] for r in plan) / len(plan)
    assert 0.38 <= qcc <= 0.42
    assert all((r["rejection_strategy"] == "identical") == r["is_qcc"] for r in plan)
    assert all(r["rejection_strategy"] != "length_violation" or r["length_constraint"] for r in plan)
    split_of_media = {}
    for r in plan:
        assert split_of_media.setdefault(r["media_key"], r["split"]) == r["split"], "a media item straddles splits"
    lots = {}
    for r in plan:
        lots.setdefault(r["lot_id"], set()).add((r["modality"], r["instruction_type"]))
    assert all(len(v) == 1 for v in lots.values()), "a lot mixes modality/type"
    assert max(sum(1 for r in plan if r["lot_id"] == lot) for lot in lots) <= recipe.lot_size


def test_plan_is_deterministic_and_seeded():
    recipe = load_recipe("demo")
    a = plan_pairs(_media(), recipe)
    b = plan_pairs(_media(), recipe)
    assert a.equals(b)
    c = plan_pairs(_media(), load_recipe("demo", {"seed": 7}))
    assert a.column("pair_id").to_pylist() != c.column("pair_id").to_pylist()


def test_plan_without_media_for_a_modality_fails_clearly():
    media = _media().filter(pa.compute.not_equal(_media().column("modality"), "audio"))
    try:
        plan_pairs(media, load_recipe("demo"))
    except ValueError as exc:
        assert "audio" in str(exc)
    else:
        raise AssertionError("expected a clear error")
