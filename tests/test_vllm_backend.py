"""The vllm backend: a clear error without the GPU extra; a real generation where vllm and a model exist."""
from __future__ import annotations

import importlib.util
import os

import pytest

from acd.backends.base import GenRequest, make_backend


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed")
def test_clear_error_without_vllm():
    with pytest.raises(RuntimeError, match=r"pip install -e '\.\[vllm\]'"):
        make_backend({"name": "vllm", "model": "any"})


def test_generates_with_vllm():
    pytest.importorskip("vllm", reason="vllm not installed (GPU extra: pip install -e '.[vllm]')")
    model = os.environ.get("ACD_VLLM_TEST_MODEL")
    if not model:
        pytest.skip("set ACD_VLLM_TEST_MODEL to a local model path to run the in-process vllm test")
    b = make_backend({"name": "vllm", "model": model, "engine": {"max_model_len": 2048, "enforce_eager": True},
                      "params": {"temperature": 0.0, "max_tokens": 32}})
    reqs = [GenRequest(f"r{i}", "chosen", {}, {}, messages=[{"role": "user", "content": [
        {"type": "text", "text": f"Write one short sentence about the number {i}."}]}]) for i in range(4)]
    res = b.generate(reqs)
    assert [r.request_id for r in res] == [r.request_id for r in reqs]
    assert all(r.status in ("ok", "failed") for r in res) and any(r.status == "ok" and r.text for r in res)
    assert all(r.backend == "vllm" and r.model == model for r in res)
