"""The request cache: stable keys, prompt-edit invalidation (only changed requests are re-sent), concurrent
processes, scale."""
from __future__ import annotations

import hashlib
import multiprocessing as mp
import shutil
import time

from acd import prompts
from acd.backends.base import GenRequest, make_backend
from acd.backends.cache import CachedBackend, RequestCache, request_key
from acd.paths import PROMPTS_DIR
from acd.testing.openai_server import OpenAITestServer


def test_key_is_stable_and_sensitive():
    msgs = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"},
                                          prompts.MARKER: "k1"}, {"type": "text", "text": "hi"}]}]
    k = request_key("m", "r", msgs, {"temperature": 0.2, "max_tokens": 10})
    # A fixed digest: the key must not drift between versions/processes (dict order, whitespace, bytes).
    assert k == request_key("m", "r", msgs, {"max_tokens": 10, "temperature": 0.2})
    assert k == "47a9c10f39181cc28df03311f01c67027c368f5c776c840a96c975454d2e4218"
    other_bytes = [{**msgs[0], "content": [{**msgs[0]["content"][0], "image_url": {"url": "data:,BBBB"}},
                                           msgs[0]["content"][1]]}]
    assert request_key("m", "r", other_bytes, {"temperature": 0.2, "max_tokens": 10}) == k  # digest, not bytes
    assert request_key("m2", "r", msgs, {"temperature": 0.2, "max_tokens": 10}) != k
    assert request_key("m", "r2", msgs, {"temperature": 0.2, "max_tokens": 10}) != k
    assert request_key("m", "r", msgs, {"temperature": 0.3, "max_tokens": 10}) != k
    msgs2 = [{**msgs[0], "content": [{**msgs[0]["content"][0], prompts.MARKER: "k2"}, msgs[0]["content"][1]]}]
    assert request_key("m", "r", msgs2, {"temperature": 0.2, "max_tokens": 10}) != k


def _image(path, colour):
    from PIL import Image

    Image.new("RGB", (32, 32), colour).save(path, format="PNG")
    return {"media_key": hashlib.sha256(path.read_bytes()).hexdigest(), "modality": "image", "ext": "png",
            "mime": "image/png", "path": str(path)}


def _render_all(prompts_dir, media):
    reqs = []
    for i, itype in enumerate(["brief", "detail", "poem", "theme"]):
        for j, m in enumerate(media):
            pair = {"pair_id": f"p{i}-{j}", "modality": "image", "instruction_type": itype, "length_key": "none",
                    "length_constraint": None, "rejection_strategy": "hallucination",
                    "instruction": f"Caption it ({itype})."}
            for role in ("chosen", "rejected"):
                msgs, tid, th = prompts.render(role, pair, m, "hallucination", prompts_dir=prompts_dir)
                reqs.append(GenRequest(f"{pair['pair_id']}:{role}", role, pair, m, messages=msgs,
                                       template_id=tid, template_hash=th))
    return reqs


def test_prompt_edit_resends_only_affected_requests(tmp_path):
    pdir = tmp_path / "prompts"
    shutil.copytree(PROMPTS_DIR, pdir, ignore=shutil.ignore_patterns("grounded"))
    media = [_image(tmp_path / f"{c}.png", c) for c in ("red", "green", "blue")]
    with OpenAITestServer() as srv:
        cfg = {"name": "openai", "endpoints": [{"base_url": srv.base_url}], "model": "test-model",
               "params": {"max_tokens": 64}}
        cache_dir = tmp_path / "cache"
        first = CachedBackend(make_backend(cfg), RequestCache(cache_dir)).generate(_render_all(pdir, media))
        assert len(first) == 24 and all(r.status == "ok" and not r.cached for r in first)
        assert srv.stats()["requests"] == 24

        # Unchanged templates: a new process-equivalent (fresh backend and cache handle) sends nothing.
        srv.reset()
        again = CachedBackend(make_backend(cfg), RequestCache(cache_dir)).generate(_render_all(pdir, media))
        assert srv.stats()["requests"] == 0 and all(r.cached for r in again)
        assert [r.text for r in again] == [r.text for r in first]

        # Edit one type's `ask`: exactly the requests whose rendered messages changed go out again - the
        # poem "chosen" prompts (3 media); the poem "rejected" prompts do not use `ask` and stay cached.
        before = {q.request_id: prompts.canonical_messages(q.messages) for q in _render_all(pdir, media)}
        f = pdir / "image" / "poem.yaml"
        f.write_text(f.read_text().replace("short poem", "short rhyming poem"))
        srv.reset()
        reqs = _render_all(pdir, media)
        changed = {q.request_id for q in reqs if prompts.canonical_messages(q.messages) != before[q.request_id]}
        assert changed == {f"p2-{j}:chosen" for j in range(3)}
        res = CachedBackend(make_backend(cfg), RequestCache(cache_dir)).generate(reqs)
        assert srv.stats()["requests"] == 3
        assert {r.request_id for r in res if not r.cached} == changed

        # Edit a comment only: template hash changes (provenance) but rendered messages do not: zero requests.
        f = pdir / "rejection.yaml"
        f.write_text("# reviewed 2025\n" + f.read_text())
        srv.reset()
        reqs2 = _render_all(pdir, media)
        assert reqs2[1].template_hash != reqs[1].template_hash
        CachedBackend(make_backend(cfg), RequestCache(cache_dir)).generate(reqs2)
        assert srv.stats()["requests"] == 0

        # Edit the hallucination strategy: only the 12 rejected requests are re-sent.
        f.write_text(f.read_text().replace("one or two plausible details", "exactly one plausible detail"))
        srv.reset()
        res = CachedBackend(make_backend(cfg), RequestCache(cache_dir)).generate(_render_all(pdir, media))
        assert srv.stats()["requests"] == 12
        assert all(r.cached == r.request_id.endswith(":chosen") for r in res)


def test_duplicates_in_a_batch_are_sent_once(tmp_path):
    with OpenAITestServer() as srv:
        cfg = {"name": "openai", "endpoints": [{"base_url": srv.base_url}], "model": "test-model"}
        msgs = [{"role": "user", "content": [{"type": "text", "text": "same"}]}]
        reqs = [GenRequest(f"r{i}", "chosen", {}, {}, messages=msgs) for i in range(5)]
        res = CachedBackend(make_backend(cfg), RequestCache(tmp_path)).generate(reqs)
        assert [r.request_id for r in res] == [f"r{i}" for i in range(5)]
        assert len({r.text for r in res}) == 1 and srv.stats()["requests"] == 1


def test_failures_are_not_cached(tmp_path):
    with OpenAITestServer(faults={"rate": 1.0, "kinds": ["500"]}) as srv:
        cfg = {"name": "openai", "endpoints": [{"base_url": srv.base_url}], "model": "test-model", "max_retries": 0}
        cache = RequestCache(tmp_path)
        msgs = [{"role": "user", "content": [{"type": "text", "text": "x"}]}]
        res = CachedBackend(make_backend(cfg), cache).generate([GenRequest("a", "chosen", {}, {}, messages=msgs)])
        assert res[0].status == "failed" and res[0].error == "http_500" and len(cache) == 0


def _writer(path, start, n):
    c = RequestCache(path)
    for i in range(start, start + n, 100):
        c.put_many((f"k{j}", {"text": f"t{j}"}) for j in range(i, min(start + n, i + 100)))


def test_concurrent_processes_and_scale(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), s, 3000)) for s in (0, 2000, 4000)]  # overlapping
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    c = RequestCache(tmp_path)
    assert len(c) == 7000
    assert c.get("k6999") == {"text": "t6999"} and c.get("nope") is None

    # 300k entries: bulk insert and a 10k-key lookup stay fast.
    t0 = time.perf_counter()
    for i in range(0, 300_000, 50_000):
        c.put_many((f"big{j:07d}", {"text": "x" * 200}) for j in range(i, i + 50_000))
    t_put = time.perf_counter() - t0
    t0 = time.perf_counter()
    got = c.get_many([f"big{j:07d}" for j in range(0, 300_000, 30)])
    t_get = time.perf_counter() - t0
    assert len(got) == 10_000
    assert t_put < 60 and t_get < 5, (t_put, t_get)
