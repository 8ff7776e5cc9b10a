"""Prompt templates (prompts/) rendered into OpenAI chat messages for the model backends.

Layout (data a researcher edits, no code change needed):
  prompts/<modality>/<type>.yaml   `ask` (what a compliant caption does) and `instruct` (how to write q)
  prompts/roles.yaml               system + user wording per role: instruct / chosen / rejected
  prompts/rejection.yaml           one wording per rejection strategy (hallucination, ignore_instruction, ...)
  prompts/judge.yaml               the LLM judge's prompt

`render(role, pair, media, strategy)` returns (messages, template_id, template_hash). The hash is the sha256
of the files that rendering read (the type file first, then the shared files, in a fixed order), so an edit
to any wording a pair used shows up in its provenance. The request cache keys on the *rendered* messages
instead, so an edit only re-sends the requests whose text actually changed.

Media become content parts: image -> base64 data URL, video -> N evenly spaced JPEG frames, audio ->
input_audio (base64 WAV). Every media part carries a marker `x_acd_media` ("<media_key>" or
"<media_key>#f<i>/<n>"); `canonical_messages` replaces such parts by the marker (the digest, not the bytes)
for cache keys, and `wire_messages` strips markers (and fills lazily rendered parts) before sending.
"""
from __future__ import annotations

import base64
import hashlib
import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import yaml

from acd import paths
from acd.media.sniff import mime_of

MEDIA_NOUN = {"image": "image", "video": "video", "audio": "audio clip"}
DEFAULT_VIDEO_FRAMES = 8
MARKER = "x_acd_media"
PATH_MARKER = "x_acd_path"  # only on lazy parts (inline_media=False): where to read the bytes at send time

_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)


@dataclass(frozen=True)
class _File:
    path: Path
    text: str
    data: dict


def _prompts_dir(prompts_dir: str | Path | None) -> Path:
    return Path(prompts_dir) if prompts_dir else paths.PROMPTS_DIR


@lru_cache(maxsize=256)
def _load_cached(path: str, mtime_ns: int, size: int) -> _File:
    text = Path(path).read_text(encoding="utf-8")
    return _File(Path(path), text, yaml.safe_load(text) or {})


def _load(path: Path) -> _File:
    # Keyed on mtime+size so an edited template is picked up in a long-lived process without a restart.
    st = path.stat()
    return _load_cached(str(path), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=1024)
def _compile(source: str) -> jinja2.Template:
    return _ENV.from_string(source)


def _fill(source: str, ctx: dict[str, Any]) -> str:
    return _compile(source).render(**ctx).strip()


def template_files(role: str, modality: str, instruction_type: str, prompts_dir=None) -> list[Path]:
    """The files a rendering of (role, modality, type) reads, in hash order."""
    root = _prompts_dir(prompts_dir)
    type_file = root / modality / f"{instruction_type}.yaml"
    if not type_file.exists():
        raise KeyError(f"no prompt template {type_file} for ({modality}, {instruction_type})")
    shared = {"instruct": ["roles.yaml"], "chosen": ["roles.yaml"], "rejected": ["roles.yaml", "rejection.yaml"],
              "judge": ["judge.yaml"]}
    if role not in shared:
        raise ValueError(f"unknown role {role!r}")
    return [type_file] + [root / name for name in shared[role]]


def _hash(files: list[_File]) -> str:
    if len(files) == 1:
        return hashlib.sha256(files[0].text.encode()).hexdigest()
    h = hashlib.sha256()
    for f in files:
        h.update(f.path.name.encode() + b"\0" + f.text.encode() + b"\0")
    return h.hexdigest()


def with_length(instruction: str, pair: dict) -> str:
    """Length control is composed onto the instruction as the release does: its sentence, appended, verbatim.
    A model-written instruction that already carries it is left alone."""
    instruction = instruction.strip()
    sentence = pair.get("length_constraint")
    if sentence and sentence not in instruction:
        instruction = f"{instruction} {sentence}"
    return instruction


def length_violation(length_key: str | None) -> str:
    """A concrete, clearly off-target length for the length_violation strategy."""
    from acd.taxonomy import LengthConstraint

    lc = LengthConstraint.from_key(length_key) if length_key and length_key != "none" else None
    bounds = lc.bounds() if lc else None
    if not bounds:
        return "make it far longer than a caption needs to be, well over 150 words"
    lo, hi = bounds
    unit = lc.unit
    if hi == float("inf"):  # an open lower bound ("more than n words"): break it by being short
        return f"write no more than {max(3, lo // 3)} words"
    if unit == "sentences":
        return f"write {hi + 2} or more sentences" if hi <= 3 or lo <= 1 else "write a single sentence"
    if hi <= 30:
        return f"write at least {2 * hi + 15} words"
    return f"write no more than {max(3, lo // 3)} words"


def _context(role: str, pair: dict, media: dict, strategy: str | None, files: list[_File]) -> dict[str, Any]:
    modality = pair.get("modality") or media.get("modality")
    type_data = files[0].data
    return {
        "modality": modality,
        "media_noun": MEDIA_NOUN.get(modality, modality),
        "type": pair.get("instruction_type"),
        "ask": type_data.get("ask", ""),
        "instruct": type_data.get("instruct", ""),
        "instruction": pair.get("instruction") or "",
        "length_sentence": pair.get("length_constraint") or "",
        "chosen": pair.get("chosen") or "",
        "rejected": pair.get("rejected") or "",
        "length_violation": length_violation(pair.get("length_key")),
        "strategy": strategy or "",
    }


def render(role: str, pair: dict, media: dict, strategy: str | None = None, *, frames: int = DEFAULT_VIDEO_FRAMES,
           inline_media: bool = True, prompts_dir: str | Path | None = None) -> tuple[list[dict], str, str]:
    """Render one request's chat messages; returns (messages, template_id, template_hash).

    `strategy` only matters for role "rejected" (the generate stage passes the pair's strategy for every
    role). inline_media=False leaves media parts lazy (marker + path, no bytes) so a large batch does not hold
    every base64 frame in memory; the openai backend fills them in at send time.
    """
    modality = pair.get("modality") or media.get("modality")
    itype = pair["instruction_type"]
    files = [_load(p) for p in template_files(role, modality, itype, prompts_dir)]
    ctx = _context(role, pair, media, strategy, files)
    version = files[0].data.get("version", 1)
    include_media = True
    if role == "judge":
        spec = files[1].data
        include_media = bool(spec.get("include_media", True))
        template_id = f"{modality}/{itype}/judge@v{version}.{spec.get('version', 1)}"
    else:
        spec = files[1].data[role]
        template_id = f"{modality}/{itype}/{role}@v{version}.{files[1].data.get('version', 1)}"
    if role == "rejected":
        strategy = strategy or pair.get("rejection_strategy") or "weak_model"
        strategies = files[2].data["strategies"]
        if strategy not in strategies:
            raise KeyError(f"no rejection strategy {strategy!r} in prompts/rejection.yaml (known: {sorted(strategies)})")
        ctx["strategy_wording"] = _fill(strategies[strategy], ctx)
        template_id = f"{modality}/{itype}/rejected/{strategy}@v{version}.{files[1].data.get('version', 1)}" \
                      f".{files[2].data.get('version', 1)}"
    system, user = _fill(spec["system"], ctx), _fill(spec["user"], ctx)
    content = media_parts(media, frames=frames, inline=inline_media) if include_media else []
    messages = [{"role": "system", "content": system},
                {"role": "user", "content": content + [{"type": "text", "text": user}]}]
    return messages, template_id, _hash(files)


# --- media as content parts ---------------------------------------------------------------------------------

def _mime(media: dict) -> str:
    return media.get("mime") or mime_of(media.get("ext") or Path(media["path"]).suffix)


def media_parts(media: dict, frames: int = DEFAULT_VIDEO_FRAMES, inline: bool = True) -> list[dict]:
    modality, key = media.get("modality"), media.get("media_key") or ""
    if modality == "video":
        markers = [f"{key}#f{i}/{frames}" for i in range(frames)]
        if not inline:
            return [{"type": "image_url", "image_url": {"url": ""}, MARKER: m, PATH_MARKER: media["path"]} for m in markers]
        urls = _video_frames(media["path"], frames)
        return [{"type": "image_url", "image_url": {"url": u}, MARKER: m} for u, m in zip(urls, markers)]
    if modality == "image":
        url = _image_url(media["path"], _mime(media)) if inline else ""
        part = {"type": "image_url", "image_url": {"url": url}, MARKER: key}
    elif modality == "audio":
        data = _audio_b64(media["path"]) if inline else ""
        part = {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}, MARKER: key}
    else:
        raise ValueError(f"unknown modality {modality!r}")
    if not inline:
        part[PATH_MARKER] = media["path"]
    return [part]


@lru_cache(maxsize=64)  # a lot renders the same media item for several pairs and roles
def _image_url(path: str, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(Path(path).read_bytes()).decode()


@lru_cache(maxsize=64)
def _audio_b64(path: str) -> str:
    raw = Path(path).read_bytes()
    if raw[:4] != b"RIFF":  # flac / mp3 / ogg: re-encode as WAV, the one format every server accepts
        import soundfile as sf

        data, sr = sf.read(io.BytesIO(raw), always_2d=False)
        buf = io.BytesIO()
        sf.write(buf, data, sr, format="WAV", subtype="PCM_16")
        raw = buf.getvalue()
    return base64.b64encode(raw).decode()


@lru_cache(maxsize=32)
def _video_frames(path: str, n: int, max_side: int = 768) -> tuple[str, ...]:
    """n evenly spaced frames as JPEG data URLs. Real videos are long and may be damaged past the frames ingest
    checked (video.max_decode_frames): acd.media.sample_frames holds n frames, never decodes past the cap and
    stops at the first undecodable packet, where decoding them all would hold every frame (gigabytes)."""
    from acd.media import load_limits, sample_frames

    images = sample_frames(Path(path).read_bytes(), n, load_limits())
    out = []
    for img in images:
        img = img.convert("RGB")
        if max(img.size) > max_side:
            img.thumbnail((max_side, max_side))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=85)
        out.append("data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode())
    return tuple(out)


def _fill_part(part: dict) -> dict:
    """A lazy part with its bytes loaded (inline parts pass through)."""
    path = part.get(PATH_MARKER)
    if not path:
        return part
    marker = part[MARKER]
    if part["type"] == "input_audio":
        return {**part, "input_audio": {"data": _audio_b64(path), "format": "wav"}}
    if "#f" in marker:
        i, n = marker.rsplit("#f", 1)[1].split("/")
        return {**part, "image_url": {"url": _video_frames(path, int(n))[int(i)]}}
    return {**part, "image_url": {"url": _image_url(path, mime_of(Path(path).suffix))}}


def canonical_messages(messages: list[dict]) -> list[dict]:
    """Messages with every media part replaced by its digest marker: what the cache key hashes."""
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            content = [{"type": p.get("type"), "media": p[MARKER]} if MARKER in p else p for p in content]
        out.append({**m, "content": content})
    return out


def wire_messages(messages: list[dict]) -> list[dict]:
    """Messages as sent to a server: lazy media loaded, our marker keys removed."""
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            content = [{k: v for k, v in _fill_part(p).items() if k not in (MARKER, PATH_MARKER)} for p in content]
        out.append({**m, "content": content})
    return out


def ensure_rendered(req, **kw) -> None:
    """Render a GenRequest's messages in place if the stage did not (backends that need messages call this)."""
    if not req.messages:
        req.messages, req.template_id, req.template_hash = render(
            req.role, req.pair, req.media, req.pair.get("rejection_strategy"), **kw)
