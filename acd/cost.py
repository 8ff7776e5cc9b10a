"""What model requests cost: the estimate before a build (`acd estimate`), the usage the server reported after
(the run's usage parts), and the budget a build may not pass (backend.budget_usd).

Tokens of a request (prompt side):
  text   tiktoken, where the model's encoding file is already in tiktoken's local cache (nothing is downloaded);
         otherwise characters / the calibrated rate in schemas/prices.yaml (`text_method()` says which);
  image  OpenAI's published tile rule (schemas/prices.yaml image_rule) on the media row's width x height;
  video  the frames the request carries (backend.video_frames), each an image after the 768-px thumbnail
         acd.prompts makes of it;
  audio  seconds x audio_tokens_per_s.
Completion tokens: the reply's typical length in words (the pair's length constraint, else the type's typical
length) x tokens_per_word, capped by max_tokens. Dollars: the price table (schemas/prices.yaml) with the
recipe's backend.prices on top; batch dollars apply the table's batch discount.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from acd import errors, paths

PRICES_FILE = paths.SCHEMAS_DIR / "prices.yaml"
USAGE_STAGE = "usage"  # <run>/usage/<lot>/part-0.parquet: one row per answered request of the lot
# Beside the usage parts (as plan/_DONE beside the plan's): the plan's estimate per lot (recalibration reads
# it), and the dollars paid for requests sent, over every run of the directory (the budget counts them).
ESTIMATE_FILE = "usage/_estimate.json"
LEDGER_FILE = "usage/_spent.json"
ROLES = ("instruct", "chosen", "rejected")


BudgetExhausted = errors.BudgetExhausted  # defined with the other errors (the generate stage catches it)


@lru_cache(maxsize=1)
def price_table() -> dict[str, Any]:
    return yaml.safe_load(PRICES_FILE.read_text())


@dataclass(frozen=True)
class Price:
    model: str
    input_per_mtok: float | None
    output_per_mtok: float | None
    audio_input_per_mtok: float | None = None
    image_base: int = 85
    image_tile: int = 170
    encoding: str | None = None

    def usd(self, prompt_tokens: float, completion_tokens: float, audio_tokens: float = 0.0) -> float | None:
        if self.input_per_mtok is None or self.output_per_mtok is None:
            return None
        audio_rate = self.audio_input_per_mtok if self.audio_input_per_mtok is not None else self.input_per_mtok
        return ((prompt_tokens - audio_tokens) * self.input_per_mtok + audio_tokens * audio_rate
                + completion_tokens * self.output_per_mtok) / 1e6


def price_for(model: str, overrides: dict | None = None) -> Price:
    """The model's prices: the recipe's backend.prices entry wins over the pinned table."""
    t = price_table()
    row = dict(t["models"].get(model) or {})
    over = (overrides or {}).get(model)
    if over is not None:
        row.update({k: v for k, v in (over.model_dump() if hasattr(over, "model_dump") else over).items()
                    if v is not None})
    rule = {**t["image_rule"], **(row.get("image_rule") or {})}
    return Price(model, row.get("input_per_mtok"), row.get("output_per_mtok"), row.get("audio_input_per_mtok"),
                 int(rule["base"]), int(rule["tile"]), row.get("encoding"))


def batch_discount() -> float:
    return float(price_table()["batch_discount"])


# --- text tokens ---------------------------------------------------------------------------------------------

def _tiktoken_cached(encoding: str):
    """tiktoken's encoding, only if its file is already in tiktoken's cache (never a download)."""
    try:
        import tiktoken
        import tiktoken_ext.openai_public as pub  # noqa: F401 - where the encodings' URLs are
    except ImportError:
        return None
    import tempfile

    urls = {"o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
            "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"}
    if encoding not in urls:
        return None
    cache = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR") or \
        os.path.join(tempfile.gettempdir(), "data-gym-cache")
    if not os.path.exists(os.path.join(cache, hashlib.sha1(urls[encoding].encode()).hexdigest())):
        return None
    try:
        return tiktoken.get_encoding(encoding)
    except Exception:  # noqa: BLE001 - a damaged cache file: fall back to the rate
        return None


@lru_cache(maxsize=8)
def text_counter(encoding: str | None):
    """(count(text) -> tokens, method in words)."""
    enc = _tiktoken_cached(encoding) if encoding else None
    if enc is not None:
        return (lambda s: len(enc.encode(s, disallowed_special=()))), f"tiktoken {encoding}"
    rate = float(price_table()["chars_per_token"])
    return (lambda s: math.ceil(len(s) / rate) if s else 0), \
        f"characters / {rate:g} per token (calibrated offline, see schemas/prices.yaml calibration; " \
        f"tiktoken {'not installed' if not _has_tiktoken() else 'has no cached ' + str(encoding or 'encoding')})"


def _has_tiktoken() -> bool:
    try:
        import tiktoken  # noqa: F401
        return True
    except ImportError:
        return False


# --- media tokens --------------------------------------------------------------------------------------------

def image_tokens(width: int | None, height: int | None, price: Price, detail: str = "high") -> int:
    """OpenAI's rule: fit into fit_px x fit_px, shortest side down to short_side_px, base + tile per 512 px."""
    rule = price_table()["image_rule"]
    if detail == "low" or not width or not height:
        return price.image_base if detail == "low" else price.image_base + price.image_tile * 4  # unknown: 2x2
    w, h = float(width), float(height)
    s = min(1.0, rule["fit_px"] / max(w, h))
    w, h = w * s, h * s
    s = min(1.0, rule["short_side_px"] / min(w, h))
    w, h = w * s, h * s
    tiles = math.ceil(w / rule["tile_px"]) * math.ceil(h / rule["tile_px"])
    return price.image_base + price.image_tile * tiles


def frame_size(width: int | None, height: int | None, max_side: int = 768) -> tuple[int | None, int | None]:
    """A video frame's size as acd.prompts sends it (PIL thumbnail to max_side)."""
    if not width or not height or max(width, height) <= max_side:
        return width, height
    s = max_side / max(width, height)
    return max(1, round(width * s)), max(1, round(height * s))


def audio_tokens(seconds: float | None) -> int:
    return math.ceil(float(seconds or 0.0) * float(price_table()["audio_tokens_per_s"]))


@dataclass
class PromptCount:
    tokens: int = 0
    audio_tokens: int = 0  # of tokens: priced at the audio rate


def prompt_tokens(messages: list[dict], media: dict | None, price: Price) -> PromptCount:
    """A request's prompt tokens from its rendered messages (inline or lazy media parts alike) and its media
    row (sizes and duration from ingest)."""
    count, _ = text_counter(price.encoding)
    t = price_table()
    media = media or {}
    out = PromptCount(tokens=int(t["tokens_per_reply"]))
    for m in messages:
        out.tokens += int(t["tokens_per_message"])
        content = m.get("content")
        if isinstance(content, str):
            out.tokens += count(content)
            continue
        for p in content or []:
            kind = p.get("type")
            if kind == "text":
                out.tokens += count(p.get("text", ""))
            elif kind == "image_url":
                w, h = media.get("width"), media.get("height")
                if media.get("modality") == "video":
                    w, h = frame_size(w, h)
                out.tokens += image_tokens(w, h, price, (p.get("image_url") or {}).get("detail", "high"))
            elif kind == "input_audio":
                a = audio_tokens(media.get("duration_s"))
                out.tokens += a
                out.audio_tokens += a
    return out


def max_tokens_of(params: dict) -> int | None:
    v = params.get("max_tokens") or params.get("max_completion_tokens")
    return int(v) if v else None


# --- completion lengths --------------------------------------------------------------------------------------

def typical_words(role: str, pair: dict) -> float:
    """The reply's typical length in words: an instruction, or a caption of the pair's type and length."""
    tw = price_table()["typical_words"]
    if role == "instruct":
        return float(tw["instruction"])
    key = pair.get("length_key")
    if key and key != "none":
        from acd.taxonomy import LengthConstraint

        lc = LengthConstraint.from_key(key)
        bounds = lc.target_bounds() if hasattr(lc, "target_bounds") else lc.bounds()
        if bounds:
            lo, hi = bounds
            mid = (lo + hi) / 2 if hi != float("inf") else lo * 1.3
            return mid * (tw["words_per_sentence"] if lc.unit == "sentences" else 1)
    caps = tw["caption"]
    return float(caps.get(pair.get("instruction_type"), caps["default"]))


def completion_tokens(role: str, pair: dict, max_tokens: int | None) -> int:
    n = math.ceil(typical_words(role, pair) * float(price_table()["tokens_per_word"]))
    return min(n, max_tokens) if max_tokens else n


# --- the estimate of a planned run ---------------------------------------------------------------------------

def _zero() -> dict[str, float]:
    return {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "usd_online": 0.0, "usd_batch": 0.0,
            "priced": True}


def _add(acc: dict, requests: int, prompt: int, completion: int, usd: float | None) -> None:
    acc["requests"] += requests
    acc["prompt_tokens"] += prompt
    acc["completion_tokens"] += completion
    if usd is None:
        acc["priced"] = False
    else:
        acc["usd_online"] += usd
        acc["usd_batch"] += usd * (1.0 - batch_discount())


def estimate_lot(build, lot: str, media_by_key: dict[str, dict]) -> dict[str, dict]:
    """{"role/modality": counts} for one planned lot: every pair's requests rendered as the build renders them
    (the instruct prompt exactly; chosen/rejected with an instruction of the typical length in place of the
    one the model has not written yet)."""
    from acd.prompts import render, with_length as _with_length

    backend = build.recipe.backend
    params = dict(backend.params)
    plan = build.store.read_part("plan", lot).to_pylist()
    out: dict[str, dict] = {}
    models = role_models(backend)
    for pair in plan:
        media = media_by_key[pair["media_key"]]
        filler = " ".join(["word"] * max(1, round(typical_words("instruct", pair))))  # ~5 chars a word, like prose
        for role in (ROLES[:2] if pair["is_qcc"] else ROLES):  # as the build: q-c-c pairs send no rejected
            p = pair if role == "instruct" else dict(pair, instruction=_with_length(filler, pair))
            messages, _, _ = render(role, p, media, pair.get("rejection_strategy"), frames=backend.video_frames,
                                    inline_media=False)
            model = models.get(f"rejected:{pair.get('rejection_strategy')}") if role == "rejected" else None
            price = price_for(model or models[role], backend.prices)
            pc = prompt_tokens(messages, media, price)
            ct = completion_tokens(role, p, max_tokens_of(params))
            _add(out.setdefault(f"{role}/{pair['modality']}", _zero()), 1, pc.tokens, ct,
                 price.usd(pc.tokens, ct, pc.audio_tokens))
    return out


def role_models(backend) -> dict[str, str]:
    models = dict(backend.models)
    default = backend.model or models.get("chosen") or next(iter(models.values()), "")
    out = {r: models.get(r, default) for r in (*ROLES, "judge")}
    out.update({k: v for k, v in models.items() if ":" in k})
    return out


def estimate_run(build, write: bool = True) -> dict[str, Any]:
    """The planned run's estimate: per lot, per role/modality, and totals. Written to <run>/cost/estimate.json
    (the build's recalibration compares observed usage with it)."""
    path = build.run_dir / ESTIMATE_FILE
    media_by_key = {}
    for row in build.media_table().to_pylist():
        row["path"] = str(build.run_dir / row["uri"])
        media_by_key[row["media_key"]] = row
    lots = {lot: estimate_lot(build, lot, media_by_key) for lot in build.lots()}
    data = {"lots": lots, "method": method_note(build), "models": role_models(build.recipe.backend)}
    if write:
        from acd.atomicio import write_text

        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(data, sort_keys=True))
    return data


def method_note(build) -> dict[str, str]:
    backend = build.recipe.backend
    enc = price_for(role_models(backend)["chosen"], backend.prices).encoding
    t = price_table()
    return {
        "text": text_counter(enc)[1],
        "image": "OpenAI tile rule: {base} + {tile} per {tile_px}-px tile after fitting {fit_px}^2 and shortest "
                 "side {short_side_px} (detail high/auto; per-model base/tile in schemas/prices.yaml)".format(**t["image_rule"]),
        "video": f"{backend.video_frames} frames per request (backend.video_frames), each an image <= 768 px",
        "audio": f"{t['audio_tokens_per_s']} tokens per second (OpenAI: 1 token per 100 ms of user audio)",
        "completion": f"typical words x {t['tokens_per_word']} tokens/word, capped by max_tokens",
        "prices": f"schemas/prices.yaml, valid as of {t['valid_as_of']} (check {t['source'].split(' ')[0]}), "
                  "recipe backend.prices on top",
        "attempts": "one attempt per request: check retries, regenerations and judge requests are not in the "
                    "plan estimate (the build's recalibration adds what it observes)",
    }


def totals(groups: dict[str, dict]) -> dict[str, Any]:
    tot = _zero()
    for g in groups.values():
        tot["requests"] += g["requests"]
        tot["prompt_tokens"] += g["prompt_tokens"]
        tot["completion_tokens"] += g["completion_tokens"]
        tot["usd_online"] += g["usd_online"]
        tot["usd_batch"] += g["usd_batch"]
        tot["priced"] = tot["priced"] and g["priced"]
    return tot


def merge(per_lot: dict[str, dict[str, dict]]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for groups in per_lot.values():
        for k, g in groups.items():
            acc = out.setdefault(k, _zero())
            for f in ("requests", "prompt_tokens", "completion_tokens", "usd_online", "usd_batch"):
                acc[f] += g[f]
            acc["priced"] = acc["priced"] and g["priced"]
    return out


def summary(data: dict[str, Any]) -> dict[str, Any]:
    """The estimate as `acd estimate --json` prints it."""
    groups = merge(data["lots"])
    tot = totals(groups)
    usd = (lambda v, priced: round(v, 4) if priced else None)
    return {
        "requests": tot["requests"], "prompt_tokens": tot["prompt_tokens"],
        "completion_tokens": tot["completion_tokens"],
        "usd_online": usd(tot["usd_online"], tot["priced"]), "usd_batch": usd(tot["usd_batch"], tot["priced"]),
        "lots": len(data["lots"]),
        "by_role_modality": [{"role": k.split("/")[0], "modality": k.split("/")[1], **{
            f: (usd(g[f], g["priced"]) if f.startswith("usd") else g[f])
            for f in ("requests", "prompt_tokens", "completion_tokens", "usd_online", "usd_batch")}}
            for k, g in sorted(groups.items())],
        "models": data.get("models"), "method": data["method"],
        "batch_discount": batch_discount(), "prices_valid_as_of": price_table()["valid_as_of"],
    }


def format_table(s: dict[str, Any]) -> str:
    money = (lambda v: "unknown" if v is None else f"${v:,.2f}")
    lines = [f"{'role':<9} {'modality':<8} {'requests':>9} {'prompt tok':>12} {'compl. tok':>11} {'online':>10} {'batch':>10}"]
    for r in s["by_role_modality"]:
        lines.append(f"{r['role']:<9} {r['modality']:<8} {r['requests']:>9,} {r['prompt_tokens']:>12,} "
                     f"{r['completion_tokens']:>11,} {money(r['usd_online']):>10} {money(r['usd_batch']):>10}")
    lines.append(f"{'total':<18} {s['requests']:>9,} {s['prompt_tokens']:>12,} {s['completion_tokens']:>11,} "
                 f"{money(s['usd_online']):>10} {money(s['usd_batch']):>10}")
    lines.append("")
    lines += [f"{k}: {v}" for k, v in s["method"].items()]
    return "\n".join(lines)


# --- observed usage ------------------------------------------------------------------------------------------

def usage_schema():
    import pyarrow as pa

    return pa.schema([pa.field("pair_id", pa.string(), nullable=False), pa.field("lot_id", pa.string(), nullable=False),
                      pa.field("modality", pa.string(), nullable=False), pa.field("role", pa.string(), nullable=False),
                      pa.field("attempt", pa.int32(), nullable=False), pa.field("model", pa.string(), nullable=False),
                      pa.field("prompt_tokens", pa.int64(), nullable=False),
                      pa.field("completion_tokens", pa.int64(), nullable=False),
                      pa.field("cached", pa.bool_(), nullable=False)])


def usage_table(rows: list[dict]):
    """A lot's usage rows, sorted (answers arrive in any order; the part's bytes must not)."""
    import pyarrow as pa

    rows = sorted(rows, key=lambda r: (r["pair_id"], ROLES.index(r["role"]) if r["role"] in ROLES else 9,
                                       r["attempt"]))
    return pa.Table.from_pylist(rows, schema=usage_schema())


def observed(run_dir: str | Path, prices: dict | None = None) -> dict[str, Any]:
    """Usage the servers reported, per role/modality, from the usage parts: `all` counts every answer the
    dataset's requests got (cached ones at what they cost when sent), `sent` only those sent by the run that
    wrote the lot."""
    from acd.runstore import RunStore

    store = RunStore(run_dir)
    if not store.has_stage(USAGE_STAGE):
        return {"groups": {}, "lots": []}
    rows = store.sql("select lot_id, role, modality, model, cached, count(*) n, sum(prompt_tokens)::bigint p, "
                     "sum(completion_tokens)::bigint c from {usage} group by all").to_pylist()
    groups: dict[str, dict] = {}
    for r in rows:
        price = price_for(r["model"], prices)
        usd = price.usd(r["p"], r["c"])
        for scope in ("all",) + (() if r["cached"] else ("sent",)):
            acc = groups.setdefault(scope, {}).setdefault(f"{r['role']}/{r['modality']}", _zero())
            _add(acc, r["n"], r["p"], r["c"], usd)
    lots = sorted({r["lot_id"] for r in rows})
    return {"groups": groups, "lots": lots}


def card_section(run_dir: str | Path, backend) -> dict[str, Any] | None:
    """What the dataset's generation cost, for the card: every answer the accepted and rejected pairs' requests got
    (cached ones at what they cost when sent), at the pinned prices, in the backend's mode; None for an offline
    backend or a run without usage. Counts from the usage parts only, so an unchanged rerun writes the same card."""
    if backend.capabilities.offline:
        return None
    groups = observed(run_dir, dict(getattr(backend, "prices", {}) or {}))["groups"].get("all")
    if not groups:
        return None
    tot = totals(groups)
    mode = getattr(backend, "mode", "online")
    usd = tot["usd_batch"] if mode == "batch" else tot["usd_online"]
    return {"requests": tot["requests"], "prompt_tokens": tot["prompt_tokens"],
            "completion_tokens": tot["completion_tokens"], "mode": mode,
            "usd": round(usd, 4) if tot["priced"] else None,
            "prices_valid_as_of": price_table()["valid_as_of"]}


def recalibrated(run_dir: str | Path, prices: dict | None = None) -> dict[str, Any] | None:
    """The estimate for the lots not yet generated, scaled per role/modality by observed / estimated over the
    lots that are (requests, prompt and completion tokens each by its own ratio). None before any lot."""
    path = Path(run_dir) / ESTIMATE_FILE
    if not path.exists():
        return None
    est = json.loads(path.read_text())
    obs = observed(run_dir, prices)
    done = [lot for lot in obs["lots"] if lot in est["lots"]]
    if not done:
        return None
    seen_est = merge({lot: est["lots"][lot] for lot in done})
    seen_obs = obs["groups"].get("all", {})
    rest = merge({lot: g for lot, g in est["lots"].items() if lot not in set(done)})
    out: dict[str, dict] = {}
    for k, g in rest.items():
        e, o = seen_est.get(k), seen_obs.get(k)
        ratio = {f: (o[f] / e[f] if e and o and e[f] else 1.0) for f in ("requests", "prompt_tokens", "completion_tokens")}
        r = {f: round(g[f] * ratio[f]) for f in ratio}
        # Dollars scale with the tokens, prompt and completion each by its ratio (weighted by their share of
        # the estimated tokens: prices differ per side, so this is an approximation, said in the line).
        usd_scale = 1.0
        if e and (e["prompt_tokens"] + e["completion_tokens"]):
            usd_scale = (ratio["prompt_tokens"] * e["prompt_tokens"] + ratio["completion_tokens"] * e["completion_tokens"]) \
                / (e["prompt_tokens"] + e["completion_tokens"])
        out[k] = {**r, "usd_online": g["usd_online"] * usd_scale, "usd_batch": g["usd_batch"] * usd_scale,
                  "priced": g["priced"], "ratio": {f: round(v, 3) for f, v in ratio.items()}}
    return {"lots_done": len(done), "lots_left": len(est["lots"]) - len(done),
            "remaining": totals(out) if out else _zero(), "by_group": out,
            "remaining_as_planned": totals(rest) if rest else _zero()}


def recalibration_line(run_dir: str | Path, prices: dict | None = None) -> str | None:
    r = recalibrated(run_dir, prices)
    if r is None or not r["by_group"]:
        return None
    rem, plan = r["remaining"], r["remaining_as_planned"]
    money = (lambda v, ok: f"${v:,.2f}" if ok else "unknown $")
    return (f"cost: after {r['lots_done']} lots, the remaining {r['lots_left']} lots recalibrated from observed usage: "
            f"{rem['requests']:,} requests, {rem['prompt_tokens']:,} prompt + {rem['completion_tokens']:,} completion "
            f"tokens, {money(rem['usd_online'], rem['priced'])} online (planned {money(plan['usd_online'], plan['priced'])})")


# --- spending and the budget ---------------------------------------------------------------------------------

_LIVE: list["Spend"] = []  # every Spend of this process: the progress line shows their total


@dataclass
class Spend:
    """Dollars this backend paid (server-reported usage x prices), dollars reserved by requests in flight, and
    the budget they may not pass together. `prior`: what earlier runs of the same run directory paid (the
    ledger), so a budget is the run's, not one invocation's."""
    budget_usd: float | None
    prices: dict | None = None
    prior: float = 0.0
    spent: float = 0.0
    in_flight: float = 0.0
    requests: int = 0
    ledger: Path | None = None
    _last_write: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self):
        _LIVE.append(self)

    def attach(self, run_dir: str | Path) -> None:
        """Count what earlier runs of this run directory paid; record what this one pays beside it."""
        self.ledger = Path(run_dir) / LEDGER_FILE
        prior = json.loads(self.ledger.read_text()) if self.ledger.exists() else {}
        self.prior, self.spent, self.requests = float(prior.get("usd", 0.0)), 0.0, 0
        self._prior_requests = int(prior.get("requests", 0))

    @property
    def total(self) -> float:
        return self.prior + self.spent

    def estimate(self, model: str, messages: list[dict], media: dict | None, params: dict,
                 counted: PromptCount | None = None) -> float:
        """A request's cost before it is sent: its prompt estimate + max_tokens, at the model's prices
        (`counted`: its prompt tokens, when the caller has counted them already)."""
        price = price_for(model, self.prices)
        pc = counted or prompt_tokens(messages, media, price)
        usd = price.usd(pc.tokens, max_tokens_of(params) or 4096, pc.audio_tokens)
        if usd is None and self.budget_usd is not None:
            raise errors.AcdError(f"backend.budget_usd needs {model}'s prices: add backend.prices: "
                                  f"{{{model}: {{input_per_mtok: ..., output_per_mtok: ...}}}} to the recipe")
        return usd or 0.0

    def reserve(self, usd: float) -> None:
        with self._lock:
            if self.budget_usd is not None and self.total + self.in_flight + usd > self.budget_usd:
                self._write(force=True)
                raise BudgetExhausted(
                    f"budget reached: backend.budget_usd={self.budget_usd:g} USD; spent {self.total:.4f} USD "
                    f"({self.spent:.4f} in this run, {self.requests} requests); finished lots and every answer are "
                    f"kept. To continue: rerun with --set backend.budget_usd=<more> and the same run directory")
            self.in_flight += usd

    def settle(self, reserved: float, model: str, usage: dict | None, unknown_usd: float | None = None,
               scale: float = 1.0) -> None:
        """A request is over: its reservation goes, what the server says it used is spent (`unknown_usd`: what
        to count for a request whose usage never came back; `scale`: the share of the price paid, 1 - the batch
        discount for a Batch API line)."""
        u = usage or {}
        usd = scale * (price_for(model, self.prices).usd(int(u.get("prompt_tokens") or 0),
                                                         int(u.get("completion_tokens") or 0)) or 0.0)
        if unknown_usd is not None:
            usd = unknown_usd
        with self._lock:
            self.in_flight -= reserved
            self.spent += usd
            self.requests += 1 if u.get("prompt_tokens") is not None else 0
            self._write()

    def _write(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.ledger is None or (not force and now - self._last_write < 1.0):
            return
        self._last_write = now
        from acd.atomicio import write_text

        self.ledger.parent.mkdir(parents=True, exist_ok=True)
        write_text(self.ledger, json.dumps({"usd": round(self.total, 6),
                                            "requests": getattr(self, "_prior_requests", 0) + self.requests}))

    def flush(self) -> None:
        with self._lock:
            self._write(force=True)


def flush_all() -> None:
    """Write every ledger of this process now (a build that stops writes what it paid to the last cent)."""
    for s in _LIVE:
        s.flush()


def spent_now() -> float:
    """Dollars paid by this process's backends in this run (the progress line's running figure)."""
    return sum(s.spent for s in _LIVE)


def ledger(run_dir: str | Path) -> dict:
    path = Path(run_dir) / LEDGER_FILE
    return json.loads(path.read_text()) if path.exists() else {}
