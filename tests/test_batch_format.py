"""Batch API lines (backend.mode: batch): the body a line carries is the online request's, byte for byte, and the
line is in the format OpenAI's Batch API and `vllm run-batch` read; the tracker counts a line's failures across
runs. (The transport against a server: tests/test_batch_build.py.)"""
from __future__ import annotations

from typing import Any, Literal

import orjson
import pytest
from pydantic import BaseModel, ConfigDict

from acd.backends.base import GenRequest
from acd.backends.batch import line_bytes, retryable
from acd.backends.batch_tracker import Tracker
from acd.backends.cache import request_key
from acd.backends.openai_backend import OpenAIBackend
from acd.recipe import load_recipe


class _Published(BaseModel):
    """The request-input line as OpenAI publishes it (platform.openai.com/docs/api-reference/batch/request-input)
    and vLLM's `BatchRequestInput` (vllm/entrypoints/openai/protocol.py) models it: exactly these four keys."""
    model_config = ConfigDict(extra="forbid")
    custom_id: str
    method: Literal["POST"]
    url: Literal["/v1/chat/completions"]
    body: dict[str, Any]


def _vllm_model():
    try:  # where vLLM keeps it (it has moved between releases); not installed on the CPU test machine
        from vllm.entrypoints.openai.protocol import BatchRequestInput  # type: ignore

        return BatchRequestInput
    except ImportError:
        try:
            from vllm.entrypoints.openai.run_batch import BatchRequestInput  # type: ignore

            return BatchRequestInput
        except ImportError:
            return None


def _request(role: str = "instruct") -> tuple[OpenAIBackend, GenRequest]:
    recipe = load_recipe("demo", {"backend": {"name": "openai", "model": "gpt-4o", "base_url": "http://127.0.0.1:9/v1",
                                              "mode": "batch", "params": {"temperature": 0.7, "max_tokens": 256}}})
    backend = OpenAIBackend(recipe.backend)
    backend._discovered = True  # no server here: nothing to ask /v1/models
    pair = {"pair_id": "p1", "modality": "image", "instruction_type": "brief", "length_constraint": None,
            "rejection_strategy": "hallucination", "instruction": "Describe the image briefly.", "q": None, "c": None}
    from PIL import Image

    import tempfile
    from pathlib import Path

    img = Path(tempfile.mkdtemp()) / "x.png"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(img)
    media = {"media_key": "k1", "modality": "image", "path": str(img), "width": 64, "height": 48}
    req = GenRequest("p1:" + role, role, pair, media, params={"sample_seed": 3})
    from acd.prompts import ensure_rendered

    ensure_rendered(req, frames=backend.video_frames)
    return backend, req


def test_a_batch_line_carries_the_online_body_in_the_published_format():
    backend, req = _request()
    model, params = backend.model_for(req), backend.wire_params(req)
    body = backend.request_body(req, model, params)
    key = request_key(model, backend.revision(model), req.messages, params)
    line = line_bytes(key, body)
    assert line.endswith(b"\n") and line.count(b"\n") == 1  # one JSONL line
    parsed = _Published.model_validate_json(line)
    assert parsed.custom_id == key and len(key) == 64  # the request cache's key: at most 64 hex characters
    assert orjson.dumps(parsed.body) == body  # the online path's body, byte for byte
    assert parsed.body["model"] == "gpt-4o" and parsed.body["seed"] == 3 and parsed.body["max_tokens"] == 256
    image_part = [p for p in parsed.body["messages"][-1]["content"] if p.get("type") == "image_url"]
    assert image_part and image_part[0]["image_url"]["url"].startswith("data:image/")  # media inline, not a path
    vllm_model = _vllm_model()
    if vllm_model is not None:  # on a machine with vLLM, its own request model must accept the line too
        vllm_model.model_validate_json(line)


def test_which_line_failures_are_resubmitted():
    for reason in ("batch_expired", "batch_cancelled", "http_500", "http_503", "malformed_json", "length_cutoff",
                   "empty_choices", "missing_line"):
        assert retryable(reason), reason
    for reason in ("http_400: invalid_request_error", "http_404", "batch_failed: duplicate_custom_id"):
        assert not retryable(reason), reason


def test_the_tracker_counts_a_lines_attempts_over_files(tmp_path):
    t = Tracker(tmp_path / "batches" / "tracker.sqlite")
    t.record_file("file-1", "m", ["a", "b"], tokens=10, size=100)
    t.record_batch("batch_1", "file-1", "in_progress")
    assert [b for b, *_ in t.live()] == ["batch_1"]
    assert t.history("a") == [("file-1", None)]  # waiting on a file: a rerun polls it instead of re-uploading
    t.take("batch_1", "file-1", {"a": "batch_expired", "b": "ok"})
    t.record_file("file-2", "m", ["a"], tokens=5, size=50)
    t.record_batch("batch_2", "file-2", "validating")
    t.take("batch_2", "file-2", {"a": "ok"})
    assert t.history("a") == [("file-1", "batch_expired"), ("file-2", "ok")]
    assert t.history("b") == [("file-1", "ok")]
    assert t.live() == [] and t.untaken() == []
    # A second connection (the rerun's) sees the same records.
    again = Tracker(tmp_path / "batches" / "tracker.sqlite")
    assert again.summary()["files"] == 2 and again.summary()["lines"] == 3


@pytest.mark.parametrize("mode", ["online", "batch"])
def test_mode_and_batch_settings_are_not_the_runs_identity(mode):
    from acd.pipeline import default_run_dir

    base = {"name": "openai", "model": "gpt-4o", "base_url": "http://x/v1"}
    a = load_recipe("demo", {"backend": base})
    b = load_recipe("demo", {"backend": {**base, "mode": mode, "batch": {"collect_s": 9, "max_lines": 10}}})
    assert default_run_dir(a) == default_run_dir(b)


def test_an_sdk_error_is_described_without_its_body():
    """A server's error body may echo the request or the key: only the type and status reach logs and reasons."""
    import httpx
    import openai

    from acd.backends.batch import _describe

    body = {"error": {"message": "Incorrect API key provided: sk-SECRET123", "code": "invalid_api_key"}}
    resp = httpx.Response(401, json=body, request=httpx.Request("POST", "http://x/v1/files"))
    exc = openai.AuthenticationError("Incorrect API key provided: sk-SECRET123", response=resp, body=body)
    said = _describe(exc)
    assert said == "AuthenticationError (HTTP 401)" and "SECRET" not in said
