"""What one chat-completion reply was: success with its text and usage, or the reason it failed (a short code,
never the server's message). Read by the online path (acd.backends.openai_backend) and by the Batch API's output
lines (acd.backends.batch), so a reply means the same whichever way it came."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import orjson

from acd.backends.pacing import retry_after_seconds

RETRYABLE_STATUS = {408, 409, 425, 500, 502, 503, 504}
_ERROR_CODE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


@dataclass
class Outcome:
    reason: str | None  # None: success
    text: str | None = None
    usage: dict = field(default_factory=dict)
    retry_after: float | None = None
    latency: float = 0.0


def classify(status: int, content: bytes, retry_after: str | None = None) -> Outcome:
    """The outcome of one HTTP response. A failure's reason is the status plus, at most, the server's error
    code (a short token): never its message, which may echo the request or the key."""
    if status == 429:
        return Outcome("http_429", retry_after=retry_after_seconds(retry_after))
    if status >= 400:
        reason = f"http_{status}"
        if 400 <= status < 500 and status not in RETRYABLE_STATUS:
            code = error_code(content)
            if code:
                reason += f": {code}"
        return Outcome(reason)
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        return Outcome("malformed_json")
    if not isinstance(data, dict):
        return Outcome("malformed_json")
    choices = data.get("choices")
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    if not choices:
        return Outcome("empty_choices", usage=usage)
    choice = choices[0] if isinstance(choices[0], dict) else {}
    if choice.get("finish_reason") == "length":
        return Outcome("length_cutoff", usage=usage)
    text = (choice.get("message") or {}).get("content")
    if not isinstance(text, str) or not text.strip():
        return Outcome("empty_content", usage=usage)
    return Outcome(None, text=text, usage=usage)


def error_code(content: bytes) -> str:
    """The OpenAI-style error code or type ("model_not_found", "invalid_request_error"), if it is a token."""
    try:
        err = orjson.loads(content).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return ""
    if not isinstance(err, dict):
        return ""
    for k in ("code", "type"):
        v = err.get(k)
        if isinstance(v, str) and _ERROR_CODE.match(v):
            return v
    return ""
