"""Recipes are data (schemas/recipes/<name>.yaml): what to build, how much, with which backend and bars.

load_recipe returns the typed, frozen Recipe of acd.recipe_model: a misspelt or misplaced key stops the
build before any work, naming the key's path and the nearest valid name; every default is filled in from
the model's fields, and the engine reads attributes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from acd.merge import deep_merge
from acd.paths import RECIPES_DIR
from acd.recipe_model import RecipeError, validate_recipe

__all__ = ["RecipeError", "load_recipe", "recipe_from_mapping", "recorded_recipe", "set_dotted"]

# Sections that come in kinds: an override that names another kind replaces the section instead of merging
# into it (a folder source has no use for the synthetic source's counts, and they would be refused).
KINDED = {"source": "kind", "backend": "name"}

# Sources of real media: no ground truth, so their captions must come from a model (see check_backend_fits).
REAL_MEDIA_SOURCES = ("folder", "manifest", "hf")


def check_backend_fits(recipe, where: str = "recipe") -> None:
    """Refuse, before any work, a recipe whose backend cannot caption its source's media: the offline
    `grounded` backend writes captions from grounding, which only the synthetic source has."""
    kind = recipe.source.kind
    if kind in REAL_MEDIA_SOURCES and recipe.backend.capabilities.needs_grounding:
        raise RecipeError(
            f"{where}: source kind {kind!r} gives real media without grounding, which the offline 'grounded' "
            "backend cannot caption; use a model backend, e.g. backend: {name: openai, endpoints: [{base_url: "
            "'http://localhost:8000/v1', api_key_env: VLLM_API_KEY}], model: <a vision-language model>} "
            "(any OpenAI-compatible server: vllm serve, SGLang, TGI, OpenAI), or backend: {name: vllm}")


def set_dotted(d: dict, dotted: str, value: Any) -> None:
    """Apply an override like "source.counts.image=10" (values parsed as YAML)."""
    keys = dotted.split(".")
    for k in keys[:-1]:
        d = d.setdefault(k, {})
    d[keys[-1]] = value


def load_recipe(name_or_path: str | Path, overrides: dict | None = None):
    """Load a recipe by name (schemas/recipes/<name>.yaml) or path; deep-merge `overrides` over it; validate.

    Returns the typed Recipe (every default filled in); `.written` keeps the merged mapping as written
    (the run directory's name hashes it)."""
    p = Path(name_or_path)
    if not p.suffix:
        p = RECIPES_DIR / f"{name_or_path}.yaml"
    if not p.exists():
        known = sorted(x.stem for x in RECIPES_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"recipe {name_or_path!r} not found (known: {', '.join(known)})")
    recipe = yaml.safe_load(p.read_text())
    for section, tag in KINDED.items():
        new = (overrides or {}).get(section)
        old = recipe.get(section) if isinstance(recipe, dict) else None
        if isinstance(new, dict) and isinstance(old, dict) and new.get(tag, old.get(tag)) != old.get(tag):
            recipe = {**recipe, section: {}}
    model = validate_recipe(deep_merge(recipe, overrides), f"recipe {p}")
    check_backend_fits(model, f"recipe {p}")
    return model


def recorded_recipe(run_dir: str | Path):
    """The Recipe a run was built from, None for a directory no build recorded. Its recipe.written.json (what
    named the run), else recipe.json: the effective recipe, or, in run directories made before typed
    recipes, the recipe as written; all load the same."""
    import json

    from acd.runstore import RECIPE_FILE, RECIPE_WRITTEN

    run_dir = Path(run_dir)
    for name in (RECIPE_WRITTEN, RECIPE_FILE):
        if (run_dir / name).exists():
            return recipe_from_mapping(json.loads((run_dir / name).read_text()), f"recipe of {run_dir}")
    return None


def recipe_from_mapping(mapping: dict[str, Any], where: str = "recipe"):
    """The typed Recipe of a mapping (a run's recorded recipe.json, a test's dict)."""
    model = validate_recipe(mapping, where)
    check_backend_fits(model, where)
    return model


# Recipe keys that are not part of a run's identity: they limit how a build runs, not what it makes, so
# changing one resumes the same run directory (a larger budget continues a build the budget stopped).
NOT_IDENTITY = (("backend", "budget_usd"), ("backend", "mode"), ("backend", "batch"), ("review", "seconds_per_task"))


def identity(mapping: dict) -> dict:
    """A recipe mapping (as written, or effective) without the keys in NOT_IDENTITY: what names the run
    directory and what a run directory's recorded recipe is compared on."""
    out = dict(mapping)
    for section, key in NOT_IDENTITY:
        if isinstance(out.get(section), dict) and key in out[section]:
            out[section] = {k: v for k, v in out[section].items() if k != key}
    return out
