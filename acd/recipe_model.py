"""The recipe as one typed, frozen model: every section, every key with its default, unknown keys refused
(pydantic, extra="forbid"). `acd.recipe.load_recipe` returns a `Recipe`; the engine reads attributes, so a
default lives in exactly one place: its field here (or the data file a section's model is made from:
schemas/checks.yaml's defaults, schemas/ingest.yaml). The JSON Schema (`acd schemas` ->
schemas/recipe.schema.json) therefore shows the defaults a build really uses, and `<run>/recipe.json`
records the effective recipe (every field, with its value).

The mapping the user wrote is kept beside the model (`Recipe.written`): the run directory's name and the
export's input hash are taken from it, so run directories made before the model held defaults keep their
names and a rebuilt dataset its bytes.
"""
from __future__ import annotations

import copy
import difflib
import types
import typing
from functools import lru_cache
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError, create_model, field_validator

from acd.errors import AcdError

# Frozen: a recipe is read, never edited in flight (a Build pickles it to workers; all must see one recipe).
STRICT = ConfigDict(extra="forbid", frozen=True)
Count = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(gt=0)]
Share = Annotated[float, Field(ge=0.0, le=1.0)]
Seconds = Annotated[float, Field(gt=0.0)]
Columns = Union[str, list[str]]


class RecipeError(AcdError, ValueError):
    """A recipe that does not match the models; the message names every offending key by its dotted path."""


class _Strict(BaseModel):
    model_config = STRICT


# Models made at run time (create_model: their fields come from data files) are registered here by name,
# and the module's __getattr__ finds them: pickle looks a class up by module and name, and a Build (its
# recipe inside) is pickled to pool and Dask workers, where these models do not exist until first asked for.
_DYNAMIC: dict[str, type[BaseModel]] = {}


def _registered(model: type[BaseModel]) -> type[BaseModel]:
    _DYNAMIC[model.__name__] = model
    return model


def __getattr__(name: str) -> Any:
    if not name.startswith("__"):
        recipe_model()  # builds (and registers) every run-time model
        if name in _DYNAMIC:
            return _DYNAMIC[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    """A strict, frozen model whose keys are the keys of `defaults`, each defaulting to its value (types from
    the values, nested mappings as nested models). `free` names nested mappings whose keys are open (a
    mapping of names to values, not a fixed record); a value given for one is merged over its default key by
    key (deep_merge, as a nested model's keys are), not put in its place. `fields` overrides a key's
    (type, default); a dotted key ("video.max_duration_s") one of a nested model's."""
    fields = fields or {}
    spec: dict[str, Any] = {}
    for key, value in defaults.items():
        # Plain defaults, not factories: the JSON Schema then shows them (pydantic copies mutable ones).
        if isinstance(value, dict) and key in free:
            spec[key] = (Annotated[dict[str, Any], BeforeValidator(_merged_over(value))], value)
        elif isinstance(value, dict):
            sub = model_from_defaults(f"{name}_{key}", value,
                                      free=tuple(f.split(".", 1)[1] for f in free if f.startswith(key + ".")),
                                      fields={f.split(".", 1)[1]: t for f, t in fields.items() if f.startswith(key + ".")})
            spec[key] = (sub, sub())
        else:
            spec[key] = (_scalar_type(value), value)
    spec.update({k: t for k, t in fields.items() if "." not in k})
    return _registered(create_model(name, __config__=STRICT, __doc__=doc or None, **spec))


def _merged_over(default: dict[str, Any]):
    from acd.merge import deep_merge

    return lambda v: deep_merge(default, v) if isinstance(v, dict) else v


@lru_cache(maxsize=1)
def ingest_limits_model() -> type[BaseModel]:
    """schemas/ingest.yaml as a model: a source's `limits:` overrides single keys, the rest keep the file's."""
    import yaml

    from acd.paths import SCHEMAS_DIR

    defaults = yaml.safe_load((SCHEMAS_DIR / "ingest.yaml").read_text(encoding="utf-8"))
    # Durations are read as float (the file writes 600, a recipe may write 0.5): an int from the file's value
    # would refuse them. int | float keeps the file's 600 an int in recipe.json.
    seconds = ("video.min_duration_s", "video.max_duration_s", "audio.min_duration_s", "audio.max_duration_s",
               "time.max_seconds_per_file")
    numbers = {k: (Union[int, float], defaults[k.split(".")[0]][k.split(".")[1]]) for k in seconds}
    return model_from_defaults("IngestLimits", defaults, free=("video.playable",), fields=numbers,
                               doc="Ingest limits: schemas/ingest.yaml's values unless set here.")


JUDGES = ("offline", "none", "llm")
CONTENT_CHECKS = ("grammar", "facts", "reference", "style", "coverage", "rejected")


@lru_cache(maxsize=1)
def checks_model() -> type[BaseModel]:
    """The check stage's settings: schemas/checks.yaml's `defaults` unless the recipe sets them."""
    import yaml

    from acd.paths import SCHEMAS_DIR

    defaults = yaml.safe_load((SCHEMAS_DIR / "checks.yaml").read_text(encoding="utf-8"))["defaults"]
    typed = {"max_attempts": Positive, "judge": Literal[JUDGES], "judge_sample_rate": Share,  # type: ignore[valid-type]
             "near_duplicate_threshold": Share, "judge_min_per_lot": Count}
    return model_from_defaults("Checks", defaults, fields={
        **{k: (t, defaults[k]) for k, t in typed.items()},
        "content": (tuple[Literal[CONTENT_CHECKS], ...], tuple(defaults["content"])),  # type: ignore[valid-type]
        "judge_params": (dict[str, Any] | None, None),  # sampling params of the llm judge's requests
    }, doc="The check stage: values over schemas/checks.yaml's defaults.")


# --- review ----------------------------------------------------------------------------------------------

class LabelStudio(_Strict):
    """The Label Studio server review pushes to. The token is read from `token_env` or the Prefect Secret
    block `token_secret`, never from the recipe."""
    url: str = "http://127.0.0.1:8080"
    token_env: str = "LABEL_STUDIO_API_KEY"
    token_secret: str | None = None  # name of a Prefect Secret block holding the token
    document_root: str | None = None  # LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT of the server; that env var if null
    project_prefix: str = "ACD review"
    # URL of the acd.review_webhook endpoint (e.g. http://127.0.0.1:8765/label-studio): push registers it on
    # the project (annotation actions) so new annotations start a sync; null: sync by hand or on a schedule.
    webhook_url: str | None = None
    # A sync retries while Label Studio is unreachable (restarting): `retries` tries, waiting backoff_s,
    # then twice that, ... (1+2+4+8 s by default), then stops with one clear message; nothing read is lost.
    retries: Count = 5
    backoff_s: Annotated[float, Field(ge=0.0)] = 1.0


class Review(_Strict):
    """Acceptance sampling and the lot gate."""
    # a lot passes when its measured compliance is above this (above 1: no lot passes, e.g. to force regeneration)
    compliance_bar: Annotated[float, Field(ge=0.0)] = 0.95
    confidence: Share = 0.95  # of the Wilson interval reported with every decision
    margin: Share = 0.03  # the interval half-width the sample is sized for (±3 points)
    label_studio: LabelStudio | None = None  # null: auto gate only
    wait: bool = False  # true: the build flow suspends until sync-reviews resumes it
    on_reject: Literal["drop", "regenerate"] = "drop"  # what the pipeline does with a rejected lot
    max_regenerations: Count = 1  # on_reject=regenerate: rounds per lot before it stays rejected
    # The auto gate counts near-duplicate pairs as deduplicated (dropped, not non-compliant); a lot where
    # more than this share are near-duplicates is rejected anyway: that is a degenerate generator.
    max_duplicate_share: Share = 0.5
    gold_share: Annotated[float, Field(ge=0.0)] = 0.05  # planted known-bad pairs per sampled pair
    min_gold: Count = 1
    overlap: Share = 0.0  # share of tasks Label Studio shows to a second annotator (agreement)
    # Sequential sampling: a lot whose interval still straddles the bar once every pushed task is answered
    # gets a further sample of max(followup_min, followup_share x pairs sampled so far), until it is decided
    # or every pair of the lot was reviewed (then the exact compliance decides).
    followup_share: Annotated[float, Field(ge=0.0)] = 0.25
    followup_min: Count = 10
    # An annotator's time per task (look at the media, read the instruction and both captions, judge): what
    # `acd estimate` turns the review workload into annotator-hours with. Not part of the run's identity.
    seconds_per_task: Seconds = 45.0


# --- sources ---------------------------------------------------------------------------------------------

class PerModality(_Strict):
    image: Count = 0
    video: Count = 0
    audio: Count = 0


def _file_source_fields() -> dict[str, Any]:
    limits = ingest_limits_model()
    return {"licence": (str | None, None), "batch_size": (Positive, 256), "limits": (limits, limits())}


@lru_cache(maxsize=1)
def _source_models() -> tuple[type[BaseModel], ...]:
    synthetic = create_model(
        "SyntheticSource", __config__=STRICT, __doc__="Procedural media with exact grounding.",
        kind=(Literal["synthetic"], ...), counts=(PerModality, PerModality()),
        batch_size=(Positive, 64))
    folder = create_model(
        "FolderSource", __config__=STRICT, __doc__="Media files under a folder.",
        kind=(Literal["folder"], ...), root=(str, ...), recursive=(bool, True),
        include=(list[str], []), exclude=(list[str], []),
        on_wrong_extension=(Literal["quarantine", "accept"], "quarantine"), **_file_source_fields())
    manifest = create_model(
        "ManifestSource", __config__=STRICT, __doc__="A jsonl / csv / parquet table of media paths or URLs.",
        kind=(Literal["manifest"], ...), path=(str, ...), root=(str | None, None),
        path_column=(str | None, None), modality_column=(str | None, None),
        # one of the two spellings (caption_columns wins); null: `caption` / `captions` when present
        caption_columns=(Columns | None, None), caption_column=(Columns | None, None),
        licence_column=(str | None, None), allow_http=(bool, False), http_timeout_s=(Seconds, 20.0),
        **_file_source_fields())
    hf = create_model(
        "HFSource", __config__=STRICT, __doc__="A Hugging Face `datasets` dataset on local disk or in the cache.",
        kind=(Literal["hf"], ...), path=(str, ...), name=(str | None, None),
        data_files=(Union[str, list[str], dict[str, Any]] | None, None), split=(str, "train"),
        streaming=(bool, True), image_column=(str | None, None), video_column=(str | None, None),
        audio_column=(str | None, None),
        # one of the two spellings (caption_column wins)
        caption_column=(Columns | None, None), caption_columns=(Columns | None, None),
        licence_column=(str | None, None), root=(str | None, None),
        **_file_source_fields())
    return tuple(_registered(m) for m in (synthetic, folder, manifest, hf))


# --- backends --------------------------------------------------------------------------------------------

ROLES = ("instruct", "chosen", "rejected", "judge")


@dataclass(frozen=True)
class Capabilities:
    """What a backend is, declared by its recipe section: the engine asks these, never a backend's name."""
    offline: bool  # needs no model or endpoint (so it cannot serve as checks.judge=llm either)
    cacheable: bool  # its answers are worth caching by request (a rerun sends nothing it already has)
    cpu_bound: bool  # its lots keep a CPU busy: worker processes, not threads waiting on an endpoint
    needs_grounding: bool  # writes from the media's grounding: synthetic media only; its inputs are its phrasing


class GroundedBackend(_Strict):
    """The offline writer: captions from the media's grounding."""
    capabilities: ClassVar[Capabilities] = Capabilities(offline=True, cacheable=False, cpu_bound=True,
                                                        needs_grounding=True)
    name: Literal["grounded"]
    model: str = "grounded-v1"
    phrasing_dir: str | None = None


class Endpoint(_Strict):
    base_url: str
    api_key_env: str | None = None  # the key is read from this environment variable, never from the recipe
    api_key_secret: str | None = None  # or from this Prefect Secret block
    max_in_flight: Positive = 64  # requests this endpoint gets at once (its slots)


class _ModelBackend(_Strict):
    capabilities: ClassVar[Capabilities] = Capabilities(offline=False, cacheable=True, cpu_bound=False,
                                                        needs_grounding=False)
    model: str | None = None  # every role's model, unless `models` names one
    models: dict[str, str] = {}  # {instruct|chosen|rejected|judge|rejected:<strategy>: model}
    model_revision: Union[str, dict[str, str]] | None = None
    params: dict[str, Any] = {}  # sampling parameters sent with every request
    video_frames: Positive = 8  # frames a video request carries
    cache: bool = True  # answers cached by request (a rerun sends nothing it already has)
    cache_dir: str | None = None

    @field_validator("models")
    @classmethod
    def _roles(cls, v: dict[str, str]) -> dict[str, str]:
        for role in v:
            if role not in ROLES and not role.startswith("rejected:"):
                near = difflib.get_close_matches(role, ROLES, n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise ValueError(f"unknown role {role!r}{hint}; roles: {', '.join(ROLES)} or rejected:<strategy>")
        return v


class ModelPrice(_Strict):
    """One model's prices in USD per million tokens (over the pinned table schemas/prices.yaml)."""
    input_per_mtok: Annotated[float, Field(ge=0.0)]
    output_per_mtok: Annotated[float, Field(ge=0.0)]
    audio_input_per_mtok: Annotated[float, Field(ge=0.0)] | None = None


class BatchSettings(_Strict):
    """backend.mode: batch (the OpenAI Batch API; acd.backends.batch). Limits are OpenAI's published ones."""
    max_lines: Positive = 50_000  # requests per input file
    max_bytes: Positive = 200 * 1024 * 1024  # bytes per input file (measured as written)
    # A wave is closed and submitted once no new request has come for this long (or a file is full): a lot's
    # instructions go in one wave, its captions (which need the instructions) in the next.
    collect_s: Seconds = 2.0
    poll_s: Seconds = 30.0  # how often a submitted batch's status is asked
    completion_window: Literal["24h"] = "24h"
    # Prompt tokens a model may have enqueued at once (OpenAI's per-model batch queue limit; null: no limit
    # known here). Files are packed to fit it and submitted in waves; token_limit_exceeded waits and resubmits.
    enqueued_tokens: Positive | None = None
    keep_files: bool = False  # keep the input JSONL files in <run>/batches/input (e.g. for `vllm run-batch`)


class OpenAIBackend(_ModelBackend):
    """Any OpenAI-compatible endpoint (OpenAI, vllm serve, SGLang, TGI)."""
    name: Literal["openai"]
    endpoints: list[Endpoint] | None = None
    base_url: str | None = None  # a single endpoint without the list
    api_key_env: str | None = None
    api_key_secret: str | None = None
    max_in_flight: Positive | None = None  # the single endpoint's slots (else Endpoint's default)
    rpm: Annotated[float, Field(gt=0)] | None = None
    tpm: Annotated[float, Field(gt=0)] | None = None
    timeout_s: Seconds = 120.0  # the ceiling; with latencies known: max(min_timeout_s, 3 x p99)
    min_timeout_s: Seconds = 2.0
    hedge: bool = True  # resend a request slower than 1.5 x p99 on a free slot; first answer wins
    down_after_s: Seconds = 5.0  # an endpoint refusing connections this long is taken out
    max_retries: Count = 5
    max_rate_limit_retries: Count = 30
    backoff_base_s: Seconds = 0.5
    backoff_cap_s: Seconds = 30.0
    seed: int = 0
    prices: dict[str, ModelPrice] = {}  # {model: prices}: over schemas/prices.yaml (acd estimate, cost, budget)
    # No request is sent that would take spent + in-flight dollars past this (the run's total, over every run
    # of its directory). Not part of the run's identity (acd.recipe.NOT_IDENTITY): raise it and rerun.
    budget_usd: Annotated[float, Field(gt=0.0)] | None = None
    # online: every request on the wire as it comes; batch: the same request bodies through the Batch API at
    # its discount, answered within the completion window. A transport, not another dataset: not identity.
    mode: Literal["online", "batch"] = "online"
    batch: BatchSettings = BatchSettings()


class VLLMBackend(_ModelBackend):
    """In-process vllm.LLM on a GPU box."""
    name: Literal["vllm"]
    engine: dict[str, Any] = {}  # vllm.LLM keyword arguments


# --- duplicates and contamination (issue 25) ----------------------------------------------------------------

class Dedup(_Strict):
    """Media deduplication at ingest: off, exact (same bytes), near (perceptual hashes and acoustic
    fingerprints; thresholds in schemas/ingest.yaml). A duplicate becomes a quarantine row (reason
    `duplicate`, naming the kept media_key); the first item in the source's order is kept."""
    media: Literal["off", "exact", "near"] = "near"


@lru_cache(maxsize=1)
def decontaminate_model() -> type[BaseModel]:
    """Evaluation sets the dataset must not overlap: their media (source specs: folders or manifests) and
    their texts (jsonl / parquet files; every string column is read). `profile: anycapeval` reads the
    AnyCapEval texts of the official release (its folder: `release_dir`)."""
    sources = Annotated[Union[_source_models()[1:3]], Field(discriminator="kind")]  # type: ignore[valid-type]
    return _registered(create_model(
        "Decontaminate", __config__=STRICT, __doc__=decontaminate_model.__doc__,
        media=(list[sources], []), texts=(list[str], []),  # type: ignore[valid-type]
        ngram=(Positive, 13),  # a pair sharing a normalised n-gram this long with an evaluation text fails
        profile=(Literal["anycapeval"] | None, None),
        release_dir=(str | None, None),  # the official AnyCap release (its anycapeval/ folder); null: $ACD_REFERENCE
    ))


# --- the rest --------------------------------------------------------------------------------------------

class Shards(_Strict):
    target_bytes: Positive = 256 * 1024 * 1024  # bytes per WebDataset tar


class Export(_Strict):
    rows_per_file: Positive = 100_000  # ~tens of MB of zstd text per Parquet file at the 300k scale
    acm_splits: list[str] = ["train"]  # splits exported for ACM training
    license: str | None = None  # the dataset licence; wins over the recipe's top-level `license`
    pretty_name: str | None = None


class _RecipeBase(_Strict):
    """What every Recipe has beside its fields: the mapping it was read from."""
    _written: dict[str, Any] = PrivateAttr(default_factory=dict)

    @field_validator("decontaminate", mode="before", check_fields=False)
    @classmethod
    def _profile_shorthand(cls, v: Any) -> Any:
        # `decontaminate: anycapeval` is `decontaminate: {profile: anycapeval}`
        return {"profile": v} if isinstance(v, str) else v

    @property
    def written(self) -> dict[str, Any]:
        """The mapping as written (recipe file + overrides, no defaults): what names the run directory."""
        return self._written

    def effective(self) -> dict[str, Any]:
        """Every field with the value the build uses (JSON types): <run>/recipe.json."""
        return self.model_dump(mode="json")


@lru_cache(maxsize=1)
def recipe_model() -> type[BaseModel]:
    """The Recipe model (built on first use: some sections come from data files)."""
    source = Annotated[Union[_source_models()], Field(discriminator="kind")]  # type: ignore[valid-type]
    backend = Annotated[Union[GroundedBackend, OpenAIBackend, VLLMBackend], Field(discriminator="name")]
    checks = checks_model()
    return _registered(create_model(
        "Recipe", __base__=_RecipeBase, __doc__="An ACD build recipe (schemas/recipes/<name>.yaml).",
        name=(str, ...), seed=(int, ...), source=(source, ...), pairs=(PerModality, ...), backend=(backend, ...),
        qcc_share=(Share, 0.4),  # share of pairs whose rejected caption equals the chosen one (q-c-c)
        length_control_share=(Share, 0.6),  # share of pairs that carry a length constraint
        splits=(dict[str, Share], {"train": 1.0}),
        lot_size=(Positive, 256),  # pairs per lot: the unit of work, resume and review
        checks=(checks, checks()), review=(Review, Review()), shards=(Shards, Shards()), export=(Export, Export()),
        license=(str | None, None),  # the dataset licence (export.license wins)
        dedup=(Dedup, Dedup()), decontaminate=(decontaminate_model(), decontaminate_model()()),
    ))


def as_section(model: type[BaseModel], value: Any) -> Any:
    """A recipe section as its model: the model itself, or a mapping of it validated (tests and tools pass
    plain mappings; the engine passes the Recipe's section)."""
    if isinstance(value, model):
        return value
    if value is None:
        return model()
    try:
        return model.model_validate(value)
    except ValidationError as err:
        raise RecipeError(f"{model.__name__}: " + "; ".join(explain_section(err))) from None


def explain_section(err: ValidationError) -> list[str]:
    return [f"{'.'.join(map(str, e['loc'])) or '<section>'}: {e['msg']}" for e in err.errors()]


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


def validate_recipe(recipe: dict[str, Any], where: str = "recipe") -> BaseModel:
    """The typed, frozen Recipe for a mapping; RecipeError naming every key that does not fit."""
    if not isinstance(recipe, dict):
        raise RecipeError(f"{where}: a recipe is a mapping, not {type(recipe).__name__}")
    try:
        model = recipe_model().model_validate(recipe)
    except ValidationError as err:
        lines = explain(err)
        raise RecipeError(f"{where}: " + ("\n  ".join([""] + lines) if len(lines) > 1 else lines[0])) from None
    model._written = copy.deepcopy(recipe)
    return model
