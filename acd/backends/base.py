"""The one backend interface: a batch of requests in, a batch of results with status out.

A stage builds GenRequests (one per pair and role), hands the whole lot's batch to a backend, and gets one
GenResult per request back, in any order, matched by request_id. A backend never raises for one bad item:
it returns status="failed" with the reason, so the rest of the lot goes on (the stage dead-letters it).
"""
from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Annotated, Any, Mapping, Protocol, Union, runtime_checkable

from pydantic import Field, TypeAdapter, ValidationError

from acd.recipe_model import Capabilities, GroundedBackend, OpenAIBackend, RecipeError, VLLMBackend

ROLES = ("instruct", "chosen", "rejected", "judge")


@dataclass
class GenRequest:
    request_id: str  # f"{pair_id}:{role}" (+ ":a<attempt>" on regeneration)
    role: str  # one of ROLES
    pair: dict[str, Any]  # the pair row so far (PAIR_SCHEMA columns: type, length constraint, strategy, q, c ...)
    media: dict[str, Any]  # the media row (MEDIA_SCHEMA columns) plus "path": absolute path of the media file
    messages: list[dict[str, Any]] = field(default_factory=list)  # rendered chat messages; the grounded backend ignores them
    params: dict[str, Any] = field(default_factory=dict)  # temperature, max_tokens, seed, ...
    template_id: str = ""
    template_hash: str = ""
    priority: int = 0  # lower is served first when requests wait for a slot (the lot that started first)


@dataclass
class GenResult:
    request_id: str
    status: str  # "ok" | "failed"
    text: str | None = None
    error: str | None = None  # reason when failed: "http_500", "timeout", "malformed_json", ...
    backend: str = ""
    model: str = ""
    model_revision: str = ""
    usage: dict[str, Any] = field(default_factory=dict)
    cached: bool = False


@runtime_checkable
class Backend(Protocol):
    name: str
    capabilities: Capabilities  # its recipe section's: offline, cacheable, cpu_bound, needs_grounding
    model: str
    model_revision: str

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        """Run every request; one result per request. Never raises for an individual item."""
        ...

# A backend may also offer `async def agenerate(request) -> GenResult` (one request on the shared backend
# loop, acd.backends.aio): the generate stage then moves each pair to its next role the moment its previous
# request returns, across every lot in flight, instead of one batch per role.


def supports_async(backend) -> bool:
    return callable(getattr(backend, "agenerate", None))


_REGISTRY: dict[str, Any] = {}


def register(name: str):
    def deco(factory):
        _REGISTRY[name] = factory
        return factory

    return deco


# A recipe's `backend:` section, one model per backend name (the name is each model's tag).
BackendSection = Union[GroundedBackend, OpenAIBackend, VLLMBackend]
# Where each backend's factory lives: backends register on import, and are imported lazily so optional
# extras (vllm) cost nothing when unused.
_MODULES = {"grounded": "acd.backends.grounded", "openai": "acd.backends.openai_backend",
            "vllm": "acd.backends.vllm_backend"}
_SECTION = TypeAdapter(Annotated[BackendSection, Field(discriminator="name")])


def backend_section(config: BackendSection | Mapping[str, Any]) -> BackendSection:
    """The typed section for a backend: the model itself, or a mapping (tests, tools) validated by the model
    its `name` picks; ValueError for an unknown or missing name, RecipeError for keys that do not fit."""
    if isinstance(config, typing.get_args(BackendSection)):
        return config  # type: ignore[return-value]
    try:
        return _SECTION.validate_python(config)
    except ValidationError as err:
        first = err.errors()[0]
        if first["type"] == "union_tag_invalid":
            raise ValueError(f"unknown backend {first['ctx']['tag']!r}; known: {sorted(_MODULES)}") from None
        if first["type"] == "union_tag_not_found":
            raise ValueError(f"backend: missing required key 'name'; known: {sorted(_MODULES)}") from None
        where = f"backend ({first['loc'][0]})" if first["loc"] else "backend"
        raise RecipeError(f"{where}: " + "; ".join(
            f"{'.'.join(map(str, e['loc'][1:])) or '<section>'}: {e['msg']}" for e in err.errors())) from None


def make_backend(config: BackendSection | Mapping[str, Any], slot_share: float = 1.0) -> Backend:
    """Build a backend from a recipe's `backend:` section (GroundedBackend / OpenAIBackend / VLLMBackend of
    acd.recipe_model) or the same as a mapping, e.g. {name: grounded} or {name: openai, ...}. `slot_share` is
    this process's share of each endpoint's slots and rate limits (Dask workers: 1/workers)."""
    import importlib

    section = backend_section(config)
    name = section.name
    if name not in _REGISTRY:
        importlib.import_module(_MODULES[name])
    return _REGISTRY[name](section, slot_share=slot_share)
