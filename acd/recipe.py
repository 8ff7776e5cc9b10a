"""Recipes are data (schemas/recipes/<name>.yaml): what to build, how much, with which backend and bars."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from acd.paths import RECIPES_DIR


class RecipeError(ValueError):
    """A recipe that cannot be built as written; the CLI prints its message as one line (no traceback)."""


# Sources of real media: no ground truth, so their captions must come from a model (see check_backend_fits).
REAL_MEDIA_SOURCES = ("folder", "manifest", "hf")


def check_backend_fits(recipe: dict[str, Any]) -> None:
    """Refuse, before any work, a recipe whose backend cannot caption its source's media: the offline
    `grounded` backend writes captions from grounding, which only the synthetic source has."""
    kind, backend = recipe["source"].get("kind"), recipe["backend"].get("name")
    if kind in REAL_MEDIA_SOURCES and backend == "grounded":
        raise RecipeError(
            f"source kind {kind!r} gives real media without grounding, which the offline 'grounded' backend "
            "cannot caption; use a model backend, e.g. backend: {name: openai, endpoints: [{base_url: "
            "'http://localhost:8000/v1', api_key_env: VLLM_API_KEY}], model: <a vision-language model>} "
            "(any OpenAI-compatible server: vllm serve, SGLang, TGI, OpenAI), or backend: {name: vllm}")


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (extra or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def set_dotted(d: dict, dotted: str, value: Any) -> None:
    """Apply an override like "source.counts.image=10" (values parsed as YAML)."""
    keys = dotted.split(".")
    for k in keys[:-1]:
        d = d.setdefault(k, {})
    d[keys[-1]] = value


def load_recipe(name_or_path: str | Path, overrides: dict | None = None) -> dict[str, Any]:
    """Load a recipe by name (schemas/recipes/<name>.yaml) or path; deep-merge `overrides` over it."""
    p = Path(name_or_path)
    if not p.suffix:
        p = RECIPES_DIR / f"{name_or_path}.yaml"
    if not p.exists():
        known = sorted(x.stem for x in RECIPES_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"recipe {name_or_path!r} not found (known: {', '.join(known)})")
    recipe = yaml.safe_load(p.read_text())
    recipe = _merge(recipe, overrides or {})
    for key in ("name", "seed", "source", "pairs", "backend"):
        if key not in recipe:
            raise RecipeError(f"recipe {p}: missing required key {key!r}")
    from acd.review.config import review_config  # lazy: keeps recipe loading import-light

    try:
        review_config(recipe.get("review") or {})  # fails fast on a misspelt review key, before any work
        check_backend_fits(recipe)
    except ValueError as e:
        raise RecipeError(f"recipe {p}: {e}") from None
    return recipe
