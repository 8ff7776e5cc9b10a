"""The `grounded` backend: the offline default that writes instructions, chosen and rejected captions
from a media item's grounding (acd/grounding.py), deterministically, for all 27 (modality, type) pairs.

Phrasing is data (prompts/grounded/*.yaml); model_revision is a hash of those files, so editing the
phrasing changes provenance and invalidates request caches. Output is a pure function of the request
(pair id, seed, role, type, length, instruction/chosen/strategy, media grounding) and the attempt.
"""
from __future__ import annotations

import hashlib
import json
import random
from collections import OrderedDict
from typing import Any, Mapping

from acd import recipe_model
from acd.backends.base import GenRequest, GenResult, register
from acd.checks.length import parse_constraint
from acd.grounded.compose import Writer
from acd.grounded.facts import Facts
from acd.grounded.keypoints import key_points
from acd.grounded.phrasing import load_phrasing
from acd.grounded.reject import STRATEGIES, hallucinated_terms, reject
from acd.taxonomy import LengthConstraint

__all__ = ["GroundedBackend", "key_points", "hallucinated_terms", "STRATEGIES", "rng_for"]

_FACTS_CACHE_SIZE = 8192  # media items; a lot touches a few hundred, the cache spans consecutive lots


def rng_for(pair: dict[str, Any], role: str, attempt: int) -> random.Random:
    """A Random seeded from a stable hash (never Python's salted hash()) of pair id, seed, role, attempt."""
    key = f"{pair.get('pair_id', '')}|{pair.get('seed', '')}|{role}|{attempt}".encode()
    return random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))


class GroundedBackend:
    name = "grounded"
    capabilities = recipe_model.GroundedBackend.capabilities

    def __init__(self, config: recipe_model.GroundedBackend | Mapping[str, Any] | None = None,
                 slot_share: float = 1.0):
        """`config`: the recipe's backend section, or a mapping of it (`name` may be left out). `slot_share`
        is accepted for make_backend's sake: this backend holds no endpoint slots."""
        self.section = section = config if isinstance(config, recipe_model.GroundedBackend) else \
            recipe_model.as_section(recipe_model.GroundedBackend, {"name": self.name, **(config or {})})
        self.ph = load_phrasing(section.phrasing_dir)
        self.model = section.model
        self.model_revision = self.ph.revision
        self._facts: OrderedDict[tuple[str, str], Facts] = OrderedDict()
        self._lc: dict[str, LengthConstraint | None] = {}

    # -- plumbing ---------------------------------------------------------------------------------
    def _facts_for(self, media: dict[str, Any], modality: str) -> Facts:
        raw = media.get("grounding")
        if not raw:
            raise ValueError("no_grounding: the grounded backend needs media.grounding")
        key = (media.get("media_key") or hashlib.sha256(str(raw).encode()).hexdigest(), modality)
        f = self._facts.get(key)
        if f is None:
            g = json.loads(raw) if isinstance(raw, str) else raw
            f = Facts(modality, g, self.ph.lexicon)
            self._facts[key] = f
            if len(self._facts) > _FACTS_CACHE_SIZE:
                self._facts.popitem(last=False)
        return f

    def _constraint(self, pair: dict[str, Any]) -> LengthConstraint | None:
        key = pair.get("length_key") or "none"
        if key not in self._lc:
            if key == "none":
                lc = None
            else:
                try:
                    lc = LengthConstraint.from_key(key)
                except KeyError:
                    lc = parse_constraint(pair.get("length_constraint") or "")
            self._lc[key] = lc
        return self._lc[key]

    # -- the Backend interface --------------------------------------------------------------------
    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        return [self._one(r) for r in requests]

    def _one(self, req: GenRequest) -> GenResult:
        try:
            text = self._text(req)
        except Exception as exc:  # one bad item never sinks the lot
            return GenResult(request_id=req.request_id, status="failed", error=f"{type(exc).__name__}: {exc}",
                             backend=self.name, model=self.model, model_revision=self.model_revision)
        return GenResult(request_id=req.request_id, status="ok", text=text, backend=self.name, model=self.model,
                         model_revision=self.model_revision)

    def _text(self, req: GenRequest) -> str:
        pair, role = req.pair, req.role
        attempt = int((req.params or {}).get("attempt", 0) or 0)
        modality = pair.get("modality") or req.media.get("modality")
        itype = pair["instruction_type"]
        facts = self._facts_for(req.media, modality)
        lc = self._constraint(pair)
        rng = rng_for(pair, role, attempt)
        writer = Writer(self.ph, facts, rng)
        if role == "instruct":
            return writer.instruction(itype, lc)
        if role == "chosen":
            return writer.caption(writer.plan(itype, pair.get("instruction")), lc)
        if role == "rejected":
            strategy = pair.get("rejection_strategy") or "weak_model"
            chosen = pair.get("chosen")
            if chosen is None:
                raise ValueError("rejected needs pair.chosen")
            plan = writer.plan(itype, pair.get("instruction"))
            return reject(self.ph, facts, plan, lc, strategy, chosen, rng)
        raise ValueError(f"unsupported_role: the grounded backend does not serve role {role!r}")


@register("grounded")
def make_grounded(config: recipe_model.GroundedBackend | Mapping[str, Any] | None = None,
                  slot_share: float = 1.0) -> GroundedBackend:
    return GroundedBackend(config, slot_share)
