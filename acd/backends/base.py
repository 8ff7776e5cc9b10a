"""The one backend interface: a batch of requests in, a batch of results with status out.

A stage builds GenRequests (one per pair and role), hands the whole lot's batch to a backend, and gets one
GenResult per request back, in any order, matched by request_id. A backend never raises for one bad item:
it returns status="failed" with the reason, so the rest of the lot goes on (the stage dead-letters it).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

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


def make_backend(config: dict[str, Any]) -> Backend:
    """Build a backend from a recipe's `backend:` mapping, e.g. {name: grounded} or {name: openai, ...}."""
    import importlib

    name = config["name"]
    if name not in _REGISTRY:
        # Backends register on import; import lazily so optional extras (vllm) cost nothing when unused.
        module = {"grounded": "acd.backends.grounded", "openai": "acd.backends.openai_backend",
                  "vllm": "acd.backends.vllm_backend"}.get(name)
        if module:
            importlib.import_module(module)
    if name not in _REGISTRY:
        raise ValueError(f"unknown backend {name!r}; known: {sorted(_REGISTRY)}")
    return _REGISTRY[name](config)
