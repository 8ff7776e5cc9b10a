"""What the test server answers (acd.testing.openai_server's chat route and acd.testing.batch_api's batch lines
alike): the deterministic reply to a request body, its usage under the server's usage rule, the faults that still
produce a body, and the 401 for a wrong key. One module both routes import, so a batch line's answer is the online
answer to the same body, byte for byte."""
from __future__ import annotations

import hashlib
import math
import random
import time
from typing import Any

import orjson

FAULT_KINDS = ("429", "500", "timeout", "malformed", "empty", "length")


def request_hash(body: dict) -> str:
    """Identity of a request as the server sees it: sha256 of the canonical JSON body."""
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _last_user_text(body: dict) -> str:
    for m in reversed(body.get("messages") or []):
        if m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, str):
                return c
            return " ".join(p.get("text", "") for p in c or [] if isinstance(p, dict) and p.get("type") == "text")
    return ""


# An obliging model's plain sentences: "It is calm and quiet and gentle." No colour, object, count, place or
# sound words, so a reply never contradicts a media item's grounding (the check stage's fact check), and
# every sentence has a verb and no doubled word (its grammar check).
_SUBJECTS = (("It", "is"), ("Everything", "looks"), ("The view", "seems"), ("The whole scene", "feels"),
             ("The picture", "is"), ("This moment", "feels"))
_VOCAB = (
    "calm quiet gentle lively simple clear balanced peaceful pleasant tidy steady open bright soft still "
    "ordinary neat plain restful cheerful orderly airy modest serene relaxed friendly careful"
).split()


def _clause(rng: random.Random, k: int) -> list[str]:
    """k words of distinct adjectives joined by "and" ("calm and quiet"), an adverb making up an even k."""
    adjs = rng.sample(_VOCAB, (k + 1) // 2)
    out = [adjs[0]]
    for adj in adjs[1:]:
        if len(out) + 2 > k:
            break
        out += ["and", adj]
    if len(out) < k:
        out.append(rng.choice(("today", "overall", "throughout", "indeed")))
    return out


def _sentence(rng: random.Random, size: int) -> str:
    """One sentence of exactly `size` words (size >= 2): clauses "subject verb adjectives", joined by
    ", and", so a long sentence never repeats a word back to back."""
    toks: list[str] = []
    while len(toks) < size:
        left = size - len(toks)
        subj, verb = rng.choice(_SUBJECTS)
        head = (subj.split() if not toks else ["and"] + subj.lower().split()) + [verb]
        if len(head) + 1 > left:
            head = ["It", "is"] if not toks else ["and", "it", "is"]
        k = left - len(head)
        if k > 7:  # leave either nothing or room for a whole further clause (", and it is calm")
            k = 7 if k - 7 >= 4 else k - 4
        if toks:
            toks[-1] += ","
        toks += head + (_clause(rng, k) if k > 0 else [])
    return " ".join(toks) + "."


def _sentences(rng: random.Random, n_words: int, n_sentences: int) -> str:
    """n_words spread over n_sentences sentences of plain vocabulary (each sentence >= 2 words)."""
    n_sentences = max(1, min(n_sentences, n_words // 2))
    sizes = [n_words // n_sentences + (1 if i < n_words % n_sentences else 0) for i in range(n_sentences)]
    return " ".join(_sentence(rng, size) for size in sizes)


def leaked(text: str, body: dict, leak: dict | None) -> tuple[str, bool]:
    """The reply with a leaked sentence appended when the request's hash falls under leak["rate"]; a verdict
    (a JSON reply) never leaks. Deterministic by request: other digits of its hash than reply_for's seed."""
    sentences = (leak or {}).get("sentences") or []
    if not sentences or "chosen_complies" in _last_user_text(body):
        return text, False
    h = request_hash(body)
    if int(h[-8:], 16) / 16**8 >= float(leak.get("rate") or 0.0):
        return text, False
    return f"{text.rstrip()} {sentences[int(h[-16:-8], 16) % len(sentences)].strip()}", True


def reply_for(body: dict) -> str:
    """The deterministic reply text for a request body (what a successful response carries).

    Like an obliging model it honours a length constraint stated in the prompt (the release's sentence),
    and its wording varies with the request, so downstream checks see plausible, non-duplicate captions.
    """
    h = request_hash(body)
    text = _last_user_text(body)
    if "chosen_complies" in text:
        v = int(h[:4], 16)
        return orjson.dumps({"chosen_complies": v % 10 != 0, "rejected_worse": v % 7 != 0, "score": v % 5,
                             "reason": f"verdict {h[:8]}"}).decode()
    from acd.checks.length import parse_constraint

    rng = random.Random(int(h[:16], 16))
    constraint = parse_constraint(text)
    if constraint is None:
        return _sentences(rng, rng.randint(14, 30), 2)
    lo, hi = constraint.target_bounds()
    if constraint.unit == "words":
        n = rng.randint(lo, hi)
        return _sentences(rng, n, max(1, n // 12))
    k = rng.randint(lo, hi)
    return _sentences(rng, k * rng.randint(6, 10), k)


USAGE_RULES = ("text", "gpt-4o", "gpt-4o-mini")
# Image tokens per OpenAI's vision guide: gpt-4o-mini bills more tokens per tile (at its lower price per token).
IMAGE_TOKENS = {"gpt-4o": (85, 170), "gpt-4o-mini": (2833, 5667)}


def _gpt4o_usage(body: dict, reply: str, rule: str = "gpt-4o") -> tuple[int, int]:
    """(prompt, completion) tokens billed the way OpenAI documents it for gpt-4o, so cost figures can be
    tested against realistic counts: text ~4 characters a token (OpenAI's rule of thumb), 3 tokens framing
    each message and 3 priming the reply, an image 85 + 170 per 512-px tile after fitting 2048x2048 and the
    shortest side 768 (85 at detail low), audio 10 tokens a second. Deliberately the server's own copy of
    the published rules, decoded from the bytes sent: it is what the client's estimate (acd.cost) is
    measured against."""
    import base64
    import io

    base, tile = IMAGE_TOKENS[rule]

    def text(t: str) -> int:
        return math.ceil(len(t) / 4) if t else 0

    n = 3
    for m in body.get("messages") or []:
        n += 3
        c = m.get("content")
        if isinstance(c, str):
            n += text(c)
            continue
        for p in c or []:
            if not isinstance(p, dict):
                continue
            if p.get("type") == "text":
                n += text(p.get("text", ""))
            elif p.get("type") == "image_url":
                url = (p.get("image_url") or {}).get("url", "")
                if (p.get("image_url") or {}).get("detail") == "low":
                    n += base
                    continue
                from PIL import Image

                w, h = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).size
                sc = min(1.0, 2048 / max(w, h))
                w, h = w * sc, h * sc
                sc = min(1.0, 768 / min(w, h))
                w, h = w * sc, h * sc
                n += base + tile * math.ceil(w / 512) * math.ceil(h / 512)
            elif p.get("type") == "input_audio":
                import soundfile as sf

                info = sf.info(io.BytesIO(base64.b64decode((p.get("input_audio") or {}).get("data", ""))))
                n += math.ceil(info.frames / info.samplerate * 10)
    return n, max(1, text(reply))


def usage_of(state: Any, body: dict, text: str) -> tuple[int, int]:
    """(prompt, completion) tokens of an answer under the server's usage rule."""
    if state.usage_rule in IMAGE_TOKENS:
        return _gpt4o_usage(body, text, state.usage_rule)
    return max(1, len(_last_user_text(body)) // 4), len(text.split())


def answer(state: Any, body: dict, fault: str | None) -> tuple[str, int, dict]:
    """(outcome, HTTP status, response body) for a chat completion request, after its latency: the one
    source of answers, so a batch line (batch_api) gets byte-for-byte the online reply to the same body.
    Handles the faults that still produce a JSON body ("500", "empty", "length"); the others are the
    online route's (they are about the connection, not the answer)."""
    h = request_hash(body)
    if fault == "500":
        return "500", 500, {"error": {"message": "internal error", "type": "server_error"}}
    if fault == "empty":
        return "empty", 200, {"id": "chatcmpl-" + h[:12], "object": "chat.completion", "model": body.get("model"),
                              "choices": [], "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}
    text, leak = leaked(reply_for(body), body, state.leak)
    state.leaked += leak
    words = text.split()
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
    finish = "stop"
    if fault == "length" or (max_tokens and len(words) > int(max_tokens)):
        words, finish = words[: max(1, min(len(words) // 2, int(max_tokens or 10**9)))], "length"
        text = " ".join(words)
    prompt_tokens, completion_tokens = usage_of(state, body, text)
    return ("ok" if finish == "stop" else "length"), 200, {
        "id": "chatcmpl-" + h[:12], "object": "chat.completion", "created": int(time.time()),
        "model": body.get("model"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def auth_error(state: Any, request) -> dict | None:
    """The 401 body for a request whose Bearer key is wrong (None when the key is right or none is set). The
    message echoes the key sent, as OpenAI's does (partly), to prove clients never copy bodies into logs."""
    if state.api_key is None:
        return None
    sent = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if sent == state.api_key:
        return None
    return {"error": {"message": f"Incorrect API key provided: {sent}. You can find your API key in your account "
                                 "settings.", "type": "invalid_request_error", "code": "invalid_api_key"}}
