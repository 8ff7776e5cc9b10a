"""The recipe's `review:` block as its model (acd.recipe_model.Review, defaults in its fields), and the Label
Studio token lookup."""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from acd.recipe_model import LabelStudio, Review, as_section


class _RecipeMapping(BaseModel):
    """What review reads of a whole recipe given as a plain mapping (a test's dict, a caller that has no
    Recipe): the review block and the seed. The other keys are the Recipe model's to validate, not review's."""
    model_config = ConfigDict(extra="ignore", frozen=True)
    review: Any = None
    seed: int | None = None


def _whole_recipe(x: Any) -> bool:
    # A review block never has these keys (the model refuses them); a recipe always has `pairs`.
    return isinstance(x, Mapping) and ("review" in x or "pairs" in x)


def review_settings(x: Any) -> Review:
    """The review block as the Review model, from a Recipe (its .review), a Review, None (the defaults), or a
    mapping: a whole recipe's (its `review` block) or a review block itself. A mapping is validated: an
    unknown or misplaced key (project_prefix outside label_studio) is refused (RecipeError, a ValueError)."""
    if isinstance(x, Review):
        return x
    if isinstance(x, BaseModel) and isinstance(getattr(x, "review", None), Review):  # a Recipe
        return x.review
    if _whole_recipe(x):
        x = as_section(_RecipeMapping, x).review
    return as_section(Review, x)


def recipe_seed(x: Any) -> int | None:
    """The recipe's seed when `x` is a whole recipe (model or mapping); None for a review block."""
    if isinstance(x, BaseModel) and isinstance(getattr(x, "seed", None), int):
        return x.seed
    if _whole_recipe(x):
        return as_section(_RecipeMapping, x).seed
    return None


def resolve_token(ls: LabelStudio | Mapping | None) -> str:
    """The API token from the environment or a Prefect Secret block. Never logged, never a parameter."""
    ls = as_section(LabelStudio, ls)
    token = os.environ.get(ls.token_env)
    if not token and ls.token_secret:
        from prefect.blocks.system import Secret  # lazy: the engine imports without Prefect running

        token = Secret.load(ls.token_secret).get()
    if not token:
        raise RuntimeError(f"Label Studio token not found: set ${ls.token_env} or review.label_studio.token_secret")
    return token
