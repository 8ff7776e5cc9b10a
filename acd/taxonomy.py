"""The instruction taxonomy (schemas/taxonomy.yaml) as typed objects.

Every other module asks this one which types exist for a modality, whether a type is content or style
control, and how a length constraint is phrased. Nothing else hard-codes a type name or a sentence.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from acd.paths import SCHEMAS_DIR

MODALITIES = ("image", "video", "audio")


@dataclass(frozen=True)
class InstructionType:
    name: str
    control: str  # "content" | "style"
    release_name: str
    description: str
    release_names: dict | None = None  # per-modality exceptions to release_name

    def release_name_for(self, modality: str) -> str:
        return (self.release_names or {}).get(modality, self.release_name)


@dataclass(frozen=True)
class LengthConstraint:
    """One concrete length constraint, e.g. word_range 30..120. form == "none" means no constraint."""

    form: str
    lo: int | None = None
    hi: int | None = None
    n: int | None = None
    count: str | None = None  # sentence count as written ("two")
    # The words the constraint was found as, when parsed from text (an alias such as "using more than 30
    # words"); None for the taxonomy's own template. Not part of identity.
    phrase: str | None = field(default=None, compare=False, hash=False, repr=False)

    @property
    def key(self) -> str:
        parts = [self.form] + [str(v) for v in (self.lo, self.hi, self.n, self.count) if v is not None]
        return ":".join(parts)

    def sentence(self) -> str | None:
        """The release's phrasing of this constraint, or None for form "none"."""
        if self.form == "none":
            return None
        tpl = load_taxonomy().length_templates[self.form]
        return tpl.format(lo=self.lo, hi=self.hi, n=self.n, count=self.count)

    @property
    def unit(self) -> str | None:
        return None if self.form == "none" else load_taxonomy().length_units[self.form]

    def bounds(self) -> tuple[int, int | float] | None:
        """(min, max) in the constraint's unit (words or sentences), inclusive; None for "none".

        An open upper bound (word_min) is math.inf: a reader accepts any length above n."""
        if self.form == "none":
            return None
        if self.form == "word_min":
            return (self.n + 1, math.inf)
        numbers = load_taxonomy().number_words
        if self.form == "word_range":
            return (self.lo, self.hi)
        if self.form == "word_exact":
            return (self.n, self.n)
        if self.form == "word_max":
            return (1, self.n)
        if self.form == "sentence_one":
            return (1, 1)
        if self.form == "sentence_exact":
            return (numbers[self.count], numbers[self.count])
        if self.form == "sentence_max":
            return (1, numbers[self.count])
        raise ValueError(f"unknown length form {self.form!r}")

    def target_bounds(self) -> tuple[int, int] | None:
        """bounds() with an open upper end closed (n * open_target_factor): what a writer aims inside."""
        b = self.bounds()
        if b is None or b[1] != math.inf:
            return b
        return (b[0], max(b[0] + 10, self.n * load_taxonomy().open_target_factor))

    @classmethod
    def from_key(cls, key: str) -> "LengthConstraint":
        for c in load_taxonomy().constraints:
            if c.key == key:
                return c
        raise KeyError(f"length constraint {key!r} is not in schemas/taxonomy.yaml")


@dataclass(frozen=True)
class Taxonomy:
    types: dict[str, InstructionType]
    modalities: dict[str, tuple[str, ...]]
    length_templates: dict[str, str]
    length_units: dict[str, str]
    constraints: tuple[LengthConstraint, ...]
    number_words: dict[str, int]
    length_aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    open_target_factor: int = 3

    def types_for(self, modality: str) -> tuple[InstructionType, ...]:
        return tuple(self.types[t] for t in self.modalities[modality])

    def combinations(self) -> list[tuple[str, str]]:
        return [(m, t) for m in MODALITIES for t in self.modalities[m]]

    @property
    def length_forms(self) -> tuple[str, ...]:
        return tuple(self.length_templates)


@lru_cache(maxsize=4)
def load_taxonomy(path: str | Path | None = None) -> Taxonomy:
    path = Path(path) if path else SCHEMAS_DIR / "taxonomy.yaml"
    raw = yaml.safe_load(path.read_text())
    types = {name: InstructionType(name=name, **spec) for name, spec in raw["types"].items()}
    modalities = {m: tuple(ts) for m, ts in raw["modalities"].items()}
    for m, ts in modalities.items():
        unknown = set(ts) - set(types)
        if unknown:
            raise ValueError(f"taxonomy: modality {m} lists unknown types {sorted(unknown)}")
    forms = raw["length"]["forms"]
    return Taxonomy(
        types=types,
        modalities=modalities,
        length_templates={f: spec["template"] for f, spec in forms.items()},
        length_units={f: spec["unit"] for f, spec in forms.items()},
        constraints=tuple(LengthConstraint(**c) for c in raw["length"]["constraints"]),
        number_words=dict(raw["length"]["number_words"]),
        length_aliases={f: tuple(spec.get("aliases") or ()) for f, spec in forms.items()},
        open_target_factor=int(raw["length"].get("open_target_factor", 3)),
    )


def taxonomy_type(restriction_type: str) -> str:
    """Benchmark `restriction[0]` (release names) -> taxonomy type name."""
    tax = load_taxonomy()
    if restriction_type in tax.types:
        return restriction_type
    for name, t in tax.types.items():
        if restriction_type == t.release_name or restriction_type in (t.release_names or {}).values():
            return name
    return restriction_type
