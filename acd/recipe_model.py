"""The recipe as typed models: every section, every key, unknown keys refused (pydantic, extra="forbid").

load_recipe validates with these and still returns the plain dict it read (the run directory's name hashes
that dict, so nothing is added to it here: defaults stay where the code that reads them keeps them). Sections
whose defaults are data (schemas/checks.yaml, schemas/ingest.yaml, the review block's DEFAULTS) get their
models from those defaults, so a key added there is a valid recipe key at once; the rest are written out.

`acd schemas` exports Recipe's JSON Schema to schemas/recipe.schema.json (a test keeps it current), so an
editor with YAML language support completes and checks recipe keys.
"""
from __future__ import annotations

import difflib
import types
import typing
from functools import lru_cache
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from acd.errors import AcdError

STRICT = ConfigDict(extra="forbid")
Count = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(gt=0)]
Share = Annotated[float, Field(ge=0.0, le=1.0)]
Seconds = Annotated[float, Field(gt=0.0)]
Columns = Union[str, list[str]]


class RecipeError(AcdError, ValueError):
    """A recipe that does not match the models; the message names every offending key by its dotted path."""


class _Strict(BaseModel):
    model_config = STRICT


# --- models derived from data files ----------------------------------------------------------------------

def _scalar_type(value: Any) -> Any:
    if isinstance(value, bool):
        return bool
    if isinstance(value, int):
        return int
    if isinstance(value, float):
        return float
    if isinstance(value, str):
        return str
    if isinstance(value, list):
        return list[_scalar_type(value[0])] if value else list
    return Any


def model_from_defaults(name: str, defaults: dict[str, Any], *, free: tuple[str, ...] = (),
                        fields: dict[str, Any] | None = None, doc: str = "") -> type[BaseModel]:
    """A strict model whose keys are the keys of `defaults` (types from their values, nested mappings as
    nested models, every key optional). `free` names nested mappings whose keys are open (a mapping of
    names to values, not a fixed record); `fields` overrides a key's (type, default) with a precise one.
    Defaults are documentation (the JSON Schema shows them); validation never writes them into a recipe."""
    spec: dict[str, Any] = {}
    for key, value in defaults.items():
        if isinstance(value, dict):
            t = dict[str, Any] if key in free else model_from_defaults(
                f"{name}_{key}", value, free=tuple(f.split(".", 1)[1] for f in free if f.startswith(key + ".")))
            spec[key] = (t | None, None)
        else:  # the data file's default, shown in the JSON Schema (validation never fills it in)
            spec[key] = (_scalar_type(value) | None, value)
    spec.update(fields or {})
    return create_model(name, __config__=STRICT, __doc__=doc or None, **spec)


@lru_cache(maxsize=1)
def _limits_model() -> type[BaseModel]:
    import yaml

    from acd.paths import SCHEMAS_DIR

    defaults = yaml.safe_load((SCHEMAS_DIR / "ingest.yaml").read_text(encoding="utf-8"))
    return model_from_defaults("IngestLimits", defaults, free=("video.playable",),
                               doc="Overrides of schemas/ingest.yaml (deep-merged over it).")


@lru_cache(maxsize=1)
def _checks_model() -> type[BaseModel]:
    from acd.checks.config import CONTENT_CHECKS, JUDGES, load_checks_spec

    defaults = load_checks_spec()["defaults"]
    typed = {"max_attempts": Positive, "judge": Literal[JUDGES], "judge_sample_rate": Share,  # type: ignore[valid-type]
             "near_duplicate_threshold": Share, "judge_min_per_lot": Count,
             "content": list[Literal[CONTENT_CHECKS]]}  # type: ignore[valid-type]
    return model_from_defaults("Checks", defaults, fields={
        **{k: (t | None, defaults.get(k)) for k, t in typed.items()},
        "judge_params": (dict[str, Any] | None, None),  # sampling params of the llm judge's requests
    }, doc="The check stage: values over schemas/checks.yaml's defaults.")


@lru_cache(maxsize=1)
def _review_model() -> type[BaseModel]:
    from acd.review.config import DEFAULTS, LS_DEFAULTS

    label_studio = model_from_defaults("LabelStudio", LS_DEFAULTS, doc="The Label Studio server review pushes to.")
    return model_from_defaults("Review", DEFAULTS, fields={
        "label_studio": (label_studio | None, None),
        "on_reject": (Literal["drop", "regenerate"] | None, DEFAULTS.get("on_reject")),
        "max_regenerations": (Count | None, DEFAULTS.get("max_regenerations")),
    }, doc="Acceptance sampling and the lot gate (acd.review.config.DEFAULTS).")


# --- sources ---------------------------------------------------------------------------------------------

class PerModality(_Strict):
    image: Count | None = None
    video: Count | None = None
    audio: Count | None = None


def _file_source_fields() -> dict[str, Any]:
    return {"licence": (str | None, None), "batch_size": (Positive | None, None),
            "limits": (_limits_model() | None, None)}


@lru_cache(maxsize=1)
def _source_models() -> tuple[type[BaseModel], ...]:
    synthetic = create_model(
        "SyntheticSource", __config__=STRICT, __doc__="Procedural media with exact grounding.",
        kind=(Literal["synthetic"], ...), counts=(PerModality | None, None), batch_size=(Positive | None, None))
    folder = create_model(
        "FolderSource", __config__=STRICT, __doc__="Media files under a folder.",
        kind=(Literal["folder"], ...), root=(str, ...), recursive=(bool | None, None),
        include=(list[str] | None, None), exclude=(list[str] | None, None),
        on_wrong_extension=(Literal["quarantine", "accept"] | None, None), **_file_source_fields())
    manifest = create_model(
        "ManifestSource", __config__=STRICT, __doc__="A jsonl / csv / parquet table of media paths or URLs.",
        kind=(Literal["manifest"], ...), path=(str, ...), root=(str | None, None),
        path_column=(str | None, None), modality_column=(str | None, None),
        caption_columns=(Columns | None, None), caption_column=(Columns | None, None),
        licence_column=(str | None, None), allow_http=(bool | None, None), http_timeout_s=(Seconds | None, None),
        **_file_source_fields())
    hf = create_model(
        "HFSource", __config__=STRICT, __doc__="A Hugging Face `datasets` dataset on local disk or in the cache.",
        kind=(Literal["hf"], ...), path=(str, ...), name=(str | None, None),
        data_files=(Union[str, list[str], dict[str, Any]] | None, None), split=(str | None, None),
        streaming=(bool | None, None), image_column=(str | None, None), video_column=(str | None, None),
        audio_column=(str | None, None), caption_column=(Columns | None, None),
        caption_columns=(Columns | None, None), licence_column=(str | None, None), root=(str | None, None),
        **_file_source_fields())
    return synthetic, folder, manifest, hf


# --- backends --------------------------------------------------------------------------------------------

ROLES = ("instruct", "chosen", "rejected", "judge")


class GroundedBackend(_Strict):
    """The offline writer: captions from the media's grounding."""
    name: Literal["grounded"]
    model: str | None = None
    phrasing_dir: str | None = None


class Endpoint(_Strict):
    base_url: str
    api_key_env: str | None = None  # the key is read from this environment variable, never from the recipe
    api_key_secret: str | None = None  # or from this Prefect Secret block
    max_in_flight: Positive | None = None


class _ModelBackend(_Strict):
    model: str | None = None  # every role's model, unless `models` names one
    models: dict[str, str] | None = None  # {instruct|chosen|rejected|judge|rejected:<strategy>: model}
    model_revision: Union[str, dict[str, str]] | None = None
    params: dict[str, Any] | None = None  # sampling parameters sent with every request
    video_frames: Positive | None = None
    cache: bool | None = None
    cache_dir: str | None = None

    @field_validator("models")
    @classmethod
    def _roles(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        for role in v or {}:
            if role not in ROLES and not role.startswith("rejected:"):
                near = difflib.get_close_matches(role, ROLES, n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise ValueError(f"unknown role {role!r}{hint}; roles: {', '.join(ROLES)} or rejected:<strategy>")
        return v


class OpenAIBackend(_ModelBackend):
    """Any OpenAI-compatible endpoint (OpenAI, vllm serve, SGLang, TGI)."""
    name: Literal["openai"]
    endpoints: list[Endpoint] | None = None
    base_url: str | None = None  # a single endpoint without the list
    api_key_env: str | None = None
    api_key_secret: str | None = None
    max_in_flight: Positive | None = None
    rpm: Annotated[float, Field(gt=0)] | None = None
    tpm: Annotated[float, Field(gt=0)] | None = None
    timeout_s: Seconds | None = None  # the ceiling; with latencies known: max(min_timeout_s, 3 x p99)
    min_timeout_s: Seconds | None = None
    hedge: bool | None = None  # resend a request slower than 1.5 x p99 on a free slot; first answer wins
    down_after_s: Seconds | None = None  # an endpoint refusing connections this long is taken out
    max_retries: Count | None = None
    max_rate_limit_retries: Count | None = None
    backoff_base_s: Seconds | None = None
    backoff_cap_s: Seconds | None = None
    seed: int | None = None


class VLLMBackend(_ModelBackend):
    """In-process vllm.LLM on a GPU box."""
    name: Literal["vllm"]
    engine: dict[str, Any] | None = None  # vllm.LLM keyword arguments


# --- the rest --------------------------------------------------------------------------------------------

class Shards(_Strict):
    target_bytes: Positive | None = None


class Export(_Strict):
    rows_per_file: Positive | None = None
    acm_splits: list[str] | None = None
    license: str | None = None
    pretty_name: str | None = None


@lru_cache(maxsize=1)
def recipe_model() -> type[BaseModel]:
    """The Recipe model (built on first use: some sections come from data files)."""
    source = Annotated[Union[_source_models()], Field(discriminator="kind")]  # type: ignore[valid-type]
    backend = Annotated[Union[GroundedBackend, OpenAIBackend, VLLMBackend], Field(discriminator="name")]
    return create_model(
        "Recipe", __config__=STRICT, __doc__="An ACD build recipe (schemas/recipes/<name>.yaml).",
        name=(str, ...), seed=(int, ...), source=(source, ...), pairs=(PerModality, ...), backend=(backend, ...),
        qcc_share=(Share | None, None), length_control_share=(Share | None, None),
        splits=(dict[str, Share] | None, None), lot_size=(Positive | None, None),
        checks=(_checks_model() | None, None), review=(_review_model() | None, None),
        shards=(Shards | None, None), export=(Export | None, None),
        license=(str | None, None),  # the dataset licence (export.license wins)
    )


def recipe_json_schema() -> dict[str, Any]:
    schema = recipe_model().model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


# --- validation with errors a person can act on ----------------------------------------------------------

def _members(t: Any) -> list[Any]:
    origin = typing.get_origin(t)
    if origin is Annotated:
        return _members(typing.get_args(t)[0])
    if origin is Union or isinstance(t, types.UnionType):
        return [m for a in typing.get_args(t) for m in _members(a)]
    return [t]


def _walk(loc: tuple) -> tuple[list[str], type[BaseModel] | None]:
    """The error location as the recipe's dotted path (union tags dropped), and the model found there."""
    shown: list[str] = []
    current: list[Any] = [recipe_model()]
    for part in loc:
        models = [m for m in current if isinstance(m, type) and issubclass(m, BaseModel)]
        tagged = [m for m in models if any(part in typing.get_args(f.annotation) for n, f in m.model_fields.items()
                                           if n in ("kind", "name") and typing.get_origin(f.annotation) is Literal)]
        if len(models) > 1 and tagged:  # a discriminated union: pydantic puts the tag into the location
            current = tagged
            continue
        shown.append(f"[{part}]" if isinstance(part, int) else str(part))
        nxt: list[Any] = []
        for m in current:
            if isinstance(m, type) and issubclass(m, BaseModel) and part in m.model_fields:
                nxt += _members(m.model_fields[part].annotation)
            elif typing.get_origin(m) in (list, dict):
                nxt += _members(typing.get_args(m)[-1])
        current = nxt
    here = [m for m in current if isinstance(m, type) and issubclass(m, BaseModel)]
    return shown, (here[0] if len(here) == 1 else None)


def _dotted(parts: list[str]) -> str:
    return ".".join(parts).replace(".[", "[") or "<recipe>"


def explain(err: ValidationError) -> list[str]:
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        if e["type"] == "extra_forbidden":
            parent, model = _walk(loc[:-1])
            key = str(loc[-1])
            valid = sorted(model.model_fields) if model else []
            near = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            lines.append(f"unknown key {_dotted(parent + [key])!r}{hint}; valid keys there: {', '.join(valid)}")
        elif e["type"] == "union_tag_invalid":
            parent, _ = _walk(loc)
            tag, expected = str(e["ctx"]["tag"]), [t.strip(" '") for t in e["ctx"]["expected_tags"].split(",")]
            near = difflib.get_close_matches(tag, expected, n=1, cutoff=0.6)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            lines.append(f"{_dotted(parent + [e['ctx']['discriminator'].strip(chr(39))])}: unknown value {tag!r}{hint};"
                         f" one of {', '.join(expected)}")
        elif e["type"] == "union_tag_not_found":
            key = e["ctx"]["discriminator"].strip("'")
            lines.append(f"missing required key {_dotted(_walk(loc)[0] + [key])!r}")
        elif e["type"] == "missing":
            lines.append(f"missing required key {_dotted(_walk(loc)[0])!r}")
        else:
            lines.append(f"{_dotted(_walk(loc)[0])}: {e['msg']} (got {e.get('input')!r})")
    return lines


def validate_recipe(recipe: dict[str, Any], where: str = "recipe") -> None:
    """Raise RecipeError naming every key that does not fit; return nothing (the dict stays as it is)."""
    if not isinstance(recipe, dict):
        raise RecipeError(f"{where}: a recipe is a mapping, not {type(recipe).__name__}")
    try:
        recipe_model().model_validate(recipe)
    except ValidationError as err:
        lines = explain(err)
        raise RecipeError(f"{where}: " + ("\n  ".join([""] + lines) if len(lines) > 1 else lines[0])) from None
