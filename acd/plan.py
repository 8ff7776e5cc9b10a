"""Plan: recipe + media table → pair specs, grouped into lots. Deterministic for a fixed recipe and seed.

Per modality, the recipe's pair count is spread evenly over the modality's instruction types; each
(modality, type) walks a seeded permutation of that modality's media so every item gets a fair share.
Length constraints, the q-c-c share and rejection strategies are assigned by exact quotas over seeded
permutations (not coin flips), so a small demo still hits every form and the q-c-c share lands on target.
Splits are assigned per media item, so one item's pairs never straddle train and test.
"""
from __future__ import annotations

import hashlib
import random
from typing import Any

import pyarrow as pa

from acd.records import PLAN_COLUMNS, PAIR_SCHEMA
from acd.taxonomy import load_taxonomy

NON_QCC_STRATEGIES = ("hallucination", "ignore_instruction", "weak_model", "length_violation")


def stable_hash(*parts: Any) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()


def _unit(*parts: Any) -> float:
    """A deterministic number in [0, 1) from the parts."""
    return int(stable_hash(*parts)[:13], 16) / float(1 << 52)


def _rng(*parts: Any) -> random.Random:
    return random.Random(int(stable_hash(*parts)[:16], 16))


def split_of(media_key: str, splits: dict[str, float], seed: int) -> str:
    """Assign a media item to a split by a stable hash, with cumulative fractions in name order.

    Name order, not the recipe's key order: the run records its recipe as sorted JSON, and a reopened run
    (Build.from_run_dir) must assign the same splits as the original."""
    u, acc = _unit("split", seed, media_key), 0.0
    names = sorted(splits)
    for name in names:
        acc += splits[name]
        if u < acc:
            return name
    return names[-1]


def _quota(n: int, share: float, rng: random.Random) -> list[bool]:
    """Exactly round(n*share) True values, in a seeded order."""
    k = round(n * share)
    flags = [True] * k + [False] * (n - k)
    rng.shuffle(flags)
    return flags


def _spread(n: int, items: list, rng: random.Random) -> list:
    """n items cycling through `items` in a seeded order, so each appears n/len(items) times (±1)."""
    order = list(items)
    rng.shuffle(order)
    return [order[i % len(order)] for i in range(n)]


def fitting_constraint(lc, constraints: list, modality: str, type_name: str, grounding: str | None, u: float):
    """lc, or, when no caption can meet both lc and the type's contract for this media (exactly 10 words for
    a detail caption of a five-object scene), another of the release's constraints that can, picked by u.

    A pair is never shipped short of its contract to meet a count. Only media with a grounding have a known
    minimum (acd.checks.coverage.min_words); the others keep their draw."""
    if lc.unit != "words" or not grounding:
        return lc
    from acd.checks.coverage import min_words

    need = min_words(modality, type_name, grounding)
    if need <= lc.target_bounds()[1]:
        return lc
    fits = [c for c in constraints if c.unit != "words" or c.target_bounds()[1] >= need]
    return fits[int(u * len(fits))] if fits else lc


def plan_pairs(media: pa.Table, recipe) -> pa.Table:
    """Pair specs (PLAN_COLUMNS of PAIR_SCHEMA) for the Recipe over the given media table."""
    tax = load_taxonomy()
    seed = recipe.seed
    lot_size = recipe.lot_size
    qcc_share = recipe.qcc_share
    length_share = recipe.length_control_share
    splits = recipe.splits
    constraints = [c for c in tax.constraints if c.form != "none"]
    none_constraint = next(c for c in tax.constraints if c.form == "none")

    keys_by_modality: dict[str, list[str]] = {}
    for key, modality in zip(media.column("media_key").to_pylist(), media.column("modality").to_pylist()):
        keys_by_modality.setdefault(modality, []).append(key)

    split_cache: dict[str, str] = {}  # one sha256 per media item, not one per pair
    groundings = (dict(zip(media.column("media_key").to_pylist(), media.column("grounding").to_pylist()))
                  if "grounding" in media.column_names else {})

    def split(key: str) -> str:
        if key not in split_cache:
            split_cache[key] = split_of(key, splits, seed)
        return split_cache[key]

    rows: list[dict[str, Any]] = []
    for modality, total in recipe.pairs.model_dump().items():
        if not total:
            continue
        keys = sorted(set(keys_by_modality.get(modality, [])))
        if not keys:
            raise ValueError(f"recipe asks for {total} {modality} pairs but the source produced no {modality} media")
        types = tax.modalities[modality]
        per_type = [total // len(types) + (1 if i < total % len(types) else 0) for i in range(len(types))]
        for type_name, n in zip(types, per_type):
            itype = tax.types[type_name]
            rng = _rng("plan", seed, modality, type_name)
            media_order = list(keys)
            rng.shuffle(media_order)
            qcc_flags = _quota(n, qcc_share, rng)
            has_length = _quota(n, length_share, rng)
            length_pool = _spread(sum(has_length), constraints, rng)
            strategies_pool = _spread(n, list(NON_QCC_STRATEGIES), rng)
            seen: dict[tuple, int] = {}
            group = []
            li = 0
            for i in range(n):
                key = media_order[i % len(media_order)]
                if has_length[i]:
                    lc = length_pool[li]
                    li += 1
                    lc = fitting_constraint(lc, constraints, modality, type_name, groundings.get(key),
                                            _unit("length-swap", seed, key, modality, type_name, i))
                else:
                    lc = none_constraint
                if qcc_flags[i]:
                    strategy = "identical"
                else:
                    strategy = strategies_pool[i]
                    if strategy == "length_violation" and lc.form == "none":
                        strategy = "weak_model"
                occurrence = seen.get((key, lc.key), 0)
                seen[(key, lc.key)] = occurrence + 1
                pair_id = stable_hash("pair", seed, key, modality, type_name, lc.key, occurrence)[:24]
                group.append(
                    {
                        "pair_id": pair_id,
                        "modality": modality,
                        "media_key": key,
                        "instruction_type": type_name,
                        "control": itype.control,
                        "length_key": lc.key,
                        "length_constraint": lc.sentence(),
                        "is_qcc": bool(qcc_flags[i]),
                        "rejection_strategy": strategy,
                        "split": split(key),
                        "seed": int(stable_hash("pairseed", seed, pair_id)[:12], 16),
                    }
                )
            group.sort(key=lambda r: r["pair_id"])
            for j, row in enumerate(group):
                row["lot_id"] = f"{modality}-{type_name}-{j // lot_size:04d}"
            rows.extend(group)

    rows.sort(key=lambda r: (r["lot_id"], r["pair_id"]))
    schema = pa.schema([PAIR_SCHEMA.field(c) for c in PLAN_COLUMNS])
    return pa.Table.from_pylist(rows, schema=schema)
