"""Recipes are data (schemas/recipes/<name>.yaml): what to build, how much, with which backend and bars.

Every key is checked against the typed models in acd.recipe_model when the recipe loads: a misspelt or
misplaced key stops the build before any work, naming the key's path and the nearest valid name.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from acd.merge import deep_merge
from acd.paths import RECIPES_DIR
from acd.recipe_model import RecipeError, validate_recipe

__all__ = ["RecipeError", "load_recipe", "set_dotted"]

# Sections that come in kinds: an override that names another kind replaces the section instead of merging
# into it (a folder source has no use for the synthetic source's counts, and they would be refused).
KINDED = {"source": "kind", "backend": "name"}


def set_dotted(d: dict, dotted: str, value: Any) -> None:
    """Apply an override like "source.counts.image=10" (values parsed as YAML)."""
    keys = dotted.split(".")
    for k in keys[:-1]:
        d = d.setdefault(k, {})
    d[keys[-1]] = value


def load_recipe(name_or_path: str | Path, overrides: dict | None = None) -> dict[str, Any]:
    """Load a recipe by name (schemas/recipes/<name>.yaml) or path; deep-merge `overrides` over it; validate.

    Returns the merged mapping as written (no defaults filled in: the run directory's name hashes it)."""
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
    recipe = deep_merge(recipe, overrides)
    validate_recipe(recipe, f"recipe {p}")
    return recipe
