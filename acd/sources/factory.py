"""A source from a recipe's `source:` section. Its own module so that sources.base (which the sources and their
acd.sources.collector import) never imports the sources themselves."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Iterable, Union

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from acd.sources.base import SECTION_MODELS, IngestResult, Source


@lru_cache(maxsize=1)
def _sections() -> tuple[tuple[type[BaseModel], ...], TypeAdapter]:
    from acd import recipe_model

    models = tuple(getattr(recipe_model, name) for name in SECTION_MODELS.values())
    return models, TypeAdapter(Annotated[Union[models], Field(discriminator="kind")])  # type: ignore[valid-type]


def source_config(config: Any) -> Any:
    """The typed source section: a section model as it is, a mapping validated by its `kind`."""
    models, adapter = _sections()
    if isinstance(config, models):
        return config
    from acd.recipe_model import RecipeError, explain_section

    try:
        return adapter.validate_python(config)
    except ValidationError as err:
        for e in err.errors():
            if e["type"] == "union_tag_invalid":
                raise RecipeError(f"unknown source kind {e['ctx']['tag']!r} (synthetic, folder, manifest, hf)") from None
        raise RecipeError("source: " + "; ".join(explain_section(err))) from None


def make_source(config: Any, seed: int) -> Source:
    """Build a source from a recipe's `source:` section (SyntheticSource | FolderSource | ManifestSource |
    HFSource of acd.recipe_model, or a mapping of one: {kind: synthetic|folder|manifest|hf, ...})."""
    config = source_config(config)
    kind = config.kind
    if kind == "synthetic":
        from acd.sources.synthetic import SyntheticSource

        return SyntheticSource(config, seed)
    if kind == "folder":
        from acd.sources.folder import FolderSource

        return FolderSource(config, seed)
    if kind == "manifest":
        from acd.sources.manifest import ManifestSource

        return ManifestSource(config, seed)
    from acd.sources.hf import HFSource

    return HFSource(config, seed)


def iter_all(source: Source, media_dir: Path) -> Iterable[IngestResult]:
    for b in source.batches():
        yield source.read(b, media_dir)
