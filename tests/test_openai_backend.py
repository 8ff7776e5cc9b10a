"""The openai backend against the local OpenAI-compatible server over real sockets: content, provenance,
failure isolation and recovery, Retry-After, pacing, load balancing, secrets."""
from __future__ import annotations

import time
from collections import Counter

import pytest

from acd.backends.base import GenRequest, make_backend
from acd.backends.cache import CachedBackend, RequestCache
from acd.errors import AcdError
from acd.testing.answers import reply_for
from acd.testing.openai_server import OpenAITestServer

REASONS = {"http_500", "timeout", "malformed_json", "empty_choices", "length_cutoff"}


def _requests(n, prefix="r", role="chosen"):
    return [GenRequest(f"{prefix}{i}", role, {"pair_id": f"p{i}"}, {},
                       messages=[{"role": "system", "content": "You caption."},
                                 {"role": "user", "content": [{"type": "text", "text": f"Describe item number {i}."}]}])
            for i in range(n)]


def _cfg(*servers, **kw):
    per = kw.pop("max_in_flight", 64)
    cfg = {"name": "openai", "endpoints": [{"base_url": s.base_url, "max_in_flight": per} for s in servers],
           "models": {"instruct": "test-model", "chosen": "test-model", "rejected": "weak-model", "judge": "test-model"},
           "params": {"temperature": 0.2, "max_tokens": 64}, "timeout_s": 5, "backoff_base_s": 0.05, "seed": 1}
    cfg.update(kw)
    return cfg


def test_generates_expected_text_and_provenance():
    with OpenAITestServer() as srv:
        b = make_backend(_cfg(srv))
        reqs = _requests(20) + _requests(5, prefix="x", role="rejected")
        res = b.generate(reqs)
        assert [r.request_id for r in res] == [r.request_id for r in reqs]
        for req, r in zip(reqs, res):
            model = "weak-model" if req.role == "rejected" else "test-model"
            body = {"model": model, "messages": req.messages, "temperature": 0.2, "max_tokens": 64}
            assert r.status == "ok" and r.text == reply_for(body)  # the server saw exactly this body
            assert (r.backend, r.model) == ("openai", model)
            assert r.model_revision == {"test-model": "rev-1", "weak-model": "rev-w"}[model]  # from /v1/models
            assert r.usage["completion_tokens"] > 0 and r.usage["attempts"] == 1
        assert srv.stats()["requests"] == 25
    # A pinned revision in the config wins over discovery.
    assert make_backend(_cfg(srv, model_revision="pinned")).model_revision == "pinned"


def test_regeneration_attempt_is_a_different_request():
    with OpenAITestServer() as srv:
        b = make_backend(_cfg(srv))
        r0 = _requests(1)[0]
        r1 = _requests(1)[0]
        r1.params = {"attempt": 1}
        a, c = b.generate([r0, r1])
        assert a.status == c.status == "ok" and a.text != c.text
        assert b.wire_params(r1)["seed"] == 1 and "attempt" not in b.wire_params(r1)


def test_faults_isolated_dead_lettered_then_healed(tmp_path):
    """2,000 requests, 20% injected failures of every kind: each item is generated exactly once or dead-lettered
    with its reason; after healing, the rerun sends only the dead letters and serves the rest from cache."""
    n = 2000
    cache = RequestCache(tmp_path / "cache")
    with OpenAITestServer(median=0.003, sigma=0.5, slots=128, seed=7,
                          faults={"rate": 0.2, "retry_after": 0.2, "hang_s": 120}) as srv:
        # hedge off: this test counts server-side successes per request (a hedge is a deliberate second one)
        # timeout_s well above any real reply on a loaded box: only the hung requests time out (a reply that
        # comes after the client gave up would count twice on the server)
        cfg = _cfg(srv, max_in_flight=128, timeout_s=2.0, max_retries=1, backoff_base_s=0.02, hedge=False)
        backend = CachedBackend(make_backend(cfg), cache)
        t0 = time.monotonic()
        res = backend.generate(_requests(n))
        first_run_s = time.monotonic() - t0
        assert len(res) == n and len({r.request_id for r in res}) == n  # none lost, none duplicated
        ok = [r for r in res if r.status == "ok"]
        dead = [r for r in res if r.status != "ok"]
        assert all(r.error in REASONS for r in dead), Counter(r.error for r in dead)
        st = srv.stats()
        kinds = set(st["outcomes"]) - {"ok"}
        assert kinds == {"429", "500", "timeout", "malformed", "empty", "length"}, st["outcomes"]
        assert 10 <= len(dead) <= 150, len(dead)  # ~2.8% expected with max_retries=1
        # Exactly once: one successful server response per successful item, none for dead letters.
        ok_per_hash = {h: c.get("ok", 0) for h, c in st["per_hash"].items()}
        assert sum(ok_per_hash.values()) == len(ok) == st["outcomes"]["ok"]
        # No request succeeded twice on the server, so each ok result is one distinct request's one success.
        assert all(v <= 1 for v in ok_per_hash.values()), "a request succeeded twice on the server"
        assert sum(1 for v in ok_per_hash.values() if v == 1) == len(ok)
        assert len(cache) == len(ok)

        # Heal and rerun with a fresh backend: only the dead letters go out, each exactly once.
        srv.heal()
        srv.reset()
        backend2 = CachedBackend(make_backend(cfg), RequestCache(tmp_path / "cache"))
        res2 = backend2.generate(_requests(n))
        assert all(r.status == "ok" for r in res2)
        st2 = srv.stats()
        assert st2["requests"] == st2["outcomes"]["ok"] == len(dead)
        assert all(c == {"ok": 1} for c in st2["per_hash"].values())
        dead_ids = {r.request_id for r in dead}
        assert all(r.cached == (r.request_id not in dead_ids) for r in res2)
        assert {r.request_id: r.text for r in res2 if r.cached} == {r.request_id: r.text for r in ok}
    assert first_run_s < 90


def test_retry_after_is_honoured():
    with OpenAITestServer(faults={"first_n": 1, "kinds": ["429"], "retry_after": 1.0}) as srv:
        b = make_backend(_cfg(srv))
        res = b.generate(_requests(10))
        assert all(r.status == "ok" and r.usage["attempts"] == 2 for r in res)
        arrivals = srv.stats(arrivals=True)["arrivals"]
        assert len(arrivals) == 10
        gaps = [t[1] - t[0] for t in arrivals.values()]
        assert all(len(t) == 2 for t in arrivals.values())
        assert min(gaps) >= 0.95 and max(gaps) < 4, gaps  # waited what the server asked, not much more


def test_rate_limit_429_retries_are_bounded():
    with OpenAITestServer(faults={"rate": 1.0, "kinds": ["429"], "retry_after": 0.01}) as srv:
        res = make_backend(_cfg(srv, max_rate_limit_retries=3)).generate(_requests(3))
        assert [r.error for r in res] == ["http_429"] * 3
        assert srv.stats()["requests"] == 12  # 1 + 3 retries each


def test_requests_per_minute_pacing():
    rpm, n = 1200, 60  # 20/s with a one-second burst of 20: 60 requests need >= 2 s
    with OpenAITestServer() as srv:
        b = make_backend(_cfg(srv, rpm=rpm))
        t0 = time.monotonic()
        res = b.generate(_requests(n))
        elapsed = time.monotonic() - t0
        assert all(r.status == "ok" for r in res)
        times = sorted(t[0] for t in srv.stats(arrivals=True)["arrivals"].values())
    assert 1.8 <= elapsed < 15, elapsed
    rate = rpm / 60
    # In every window: at most rate * window + the one-second burst, with 0.5 s of slack for the jitter
    # between taking a token and the request reaching the server (new connections, a loaded CI box).
    for i, t in enumerate(times):
        for j in range(i + 1, len(times)):
            window = times[j] - t
            assert j - i + 1 <= rate * (window + 0.5) + rate + 1, (i, j, window)
    # And overall: after the burst, the sustained rate is the configured one (within 10%), with the same
    # 0.5 s arrival jitter as above: on a loaded box the burst's new connections reach the server late,
    # which shortens the first-to-last arrival span without the client sending any faster.
    assert (n - rate) / (times[-1] - times[0] + 0.5) <= rate * 1.1


def test_tokens_per_minute_pacing():
    # 9,600 tpm = 160 tokens/s, burst 160. Each request reserves its estimate (~73: text + max_tokens 64) and is
    # re-debited with the real usage the server reports, so what must hold is on real tokens:
    # used <= rate * elapsed + burst + one reservation.
    tpm = 9_600
    with OpenAITestServer() as srv:
        b = make_backend(_cfg(srv, tpm=tpm))
        t0 = time.monotonic()
        res = b.generate(_requests(40))
        elapsed = time.monotonic() - t0
    assert all(r.status == "ok" for r in res)
    used = sum(r.usage["total_tokens"] for r in res)
    rate = tpm / 60
    assert used <= rate * elapsed + rate + 80, (used, elapsed)
    assert elapsed >= (used - rate - 80) / rate > 1.0  # it really had to wait
    assert elapsed < 20


def test_load_balancing_across_two_servers():
    # Latency long enough that the servers, not this 2-core client, set the pace.
    with OpenAITestServer(median=0.1, slots=64, seed=1, process=True) as a, \
            OpenAITestServer(median=0.1, slots=64, seed=2, process=True) as b:
        backend = make_backend(_cfg(a, b, max_in_flight=16, hedge=False))  # counts requests routed, not copies
        res = backend.generate(_requests(400))
        assert all(r.status == "ok" for r in res)
        sa, sb = a.stats(), b.stats()
        assert sa["requests"] + sb["requests"] == 400
        assert min(sa["requests"], sb["requests"]) >= 160, (sa["requests"], sb["requests"])
        assert sa["max_in_flight"] <= 16 and sb["max_in_flight"] <= 16  # per-endpoint bound held
        assert sa["max_in_flight"] >= 12 and sb["max_in_flight"] >= 12  # and both were actually used in parallel


def test_least_in_flight_favours_the_faster_server():
    with OpenAITestServer(median=0.05, slots=64, process=True) as fast, \
            OpenAITestServer(median=0.5, slots=64, process=True) as slow:
        # No hedging: the counts below are of requests routed, not of straggler copies.
        res = make_backend(_cfg(fast, slow, max_in_flight=16, hedge=False)).generate(_requests(300))
        assert all(r.status == "ok" for r in res)
        # Both run at most 16 at a time; the fast one frees slots ~10x as often, so it takes most of the work.
        # (The slow one gets at least its initial share: least-in-flight spreads the first requests evenly.)
        nf, ns = fast.stats()["requests"], slow.stats()["requests"]
        assert nf + ns == 300 and nf > 3 * ns and ns >= 16, (nf, ns)


def test_dead_endpoint_does_not_sink_the_batch():
    with OpenAITestServer() as live:
        dead = OpenAITestServer()  # never started: connection refused
        cfg = _cfg(live, max_in_flight=8)
        cfg["endpoints"].append({"base_url": dead.base_url, "max_in_flight": 8})
        res = make_backend(cfg).generate(_requests(100))
        assert all(r.status == "ok" for r in res), Counter(r.error for r in res)


def test_api_key_from_env_never_leaks(monkeypatch, tmp_path):
    secret = "sk-test-SECRET-123"
    monkeypatch.setenv("ACD_TEST_KEY", secret)
    with OpenAITestServer() as srv:
        cfg = _cfg(srv)
        cfg["endpoints"][0]["api_key_env"] = "ACD_TEST_KEY"
        b = make_backend(cfg)
        cached = CachedBackend(b, RequestCache(tmp_path))
        res = cached.generate(_requests(3))
        assert all(r.status == "ok" for r in res)
        assert secret not in repr(b.endpoints) and secret not in repr(res) and secret not in repr(cfg)
        assert secret not in (tmp_path / "requests.sqlite").read_bytes().decode("latin-1")
    monkeypatch.delenv("ACD_TEST_KEY")
    with pytest.raises(AcdError, match="ACD_TEST_KEY"):
        make_backend(cfg)


def test_bad_request_is_not_retried():
    with OpenAITestServer() as srv:
        b = make_backend(_cfg(srv))
        req = _requests(1)[0]
        req.messages = [{"role": "user", "content": [{"type": "text", "text": "x"}]}]
        res = b.generate([req])
        assert res[0].status == "ok"
        # A 400 (here: the server rejects a non-JSON body) fails at once with the server's message.
        import httpx

        r = httpx.post(srv.base_url + "/chat/completions", content=b"not json")
        assert r.status_code == 400


def test_llm_judge_through_the_backend(tmp_path):
    from PIL import Image

    from acd.backends.llm_judge import LLMJudge, parse_verdict

    img = tmp_path / "a.png"
    Image.new("RGB", (16, 16), "red").save(img)
    media = {"media_key": "k" * 64, "modality": "image", "ext": "png", "mime": "image/png", "path": str(img)}
    pairs = [{"pair_id": f"p{i}", "modality": "image", "instruction_type": "brief", "length_key": "none",
              "instruction": "Describe it briefly.", "chosen": f"A red square {i}.", "rejected": "A blue circle.",
              "media": media} for i in range(30)]
    with OpenAITestServer() as srv:
        backend = CachedBackend(make_backend(_cfg(srv)), RequestCache(tmp_path / "c"))
        verdicts = LLMJudge(backend).judge(pairs)
        assert srv.stats()["requests"] == 30
    assert [v["pair_id"] for v in verdicts] == [p["pair_id"] for p in pairs]
    assert all(v["parse_error"] is None and isinstance(v["chosen_complies"], bool) and 0 <= v["score"] <= 4
               for v in verdicts)
    assert len({v["score"] for v in verdicts}) > 1  # the verdicts really come from the replies
    assert all(v["template_id"].startswith("image/brief/judge@") for v in verdicts)

    # Robust parsing of what models really send.
    assert parse_verdict('Sure! ```json\n{"chosen_complies": "yes", "rejected_worse": 1, "score": "3", "reason": "ok"}\n```') \
        == {"chosen_complies": True, "rejected_worse": True, "score": 3.0, "reason": "ok", "parse_error": None}
    v = parse_verdict("Verdict: {'chosen_complies': false, 'rejected_worse': true, 'score': 7, 'reason': 'x',}")
    assert v["chosen_complies"] is False and v["score"] == 4.0 and v["parse_error"] is None
    assert parse_verdict("I think it is fine.")["parse_error"] == "no_json_verdict"
    assert parse_verdict('{"other": 1} then {"chosen_complies": true, "score": 2}')["score"] == 2.0


def test_pipeline_rerun_sends_zero_requests(tmp_path):
    """A finished small build on the openai backend, rerun: zero requests (parts on disk); a second run
    directory with the same recipe: zero requests too (the shared request cache)."""
    from acd import pipeline
    with OpenAITestServer(median=0.002) as srv:
        ov = {"source": {"counts": {"image": 4, "video": 2, "audio": 2}},
              "pairs": {"image": 12, "video": 6, "audio": 6}, "lot_size": 8,
              "checks": {"content": ["grammar", "facts"]},  # the test server's prose is not about the picture
              "backend": {"name": "openai", "endpoints": [{"base_url": srv.base_url, "max_in_flight": 16}],
                          "model": "test-model", "params": {"max_tokens": 256}, "cache_dir": str(tmp_path / "cache")}}
        pipeline.run_build("demo", tmp_path / "out", tmp_path / "run", overrides=ov)
        first = srv.stats()
        assert first["outcomes"].get("ok", 0) > 0
        srv.reset()
        pipeline.run_build("demo", tmp_path / "out", tmp_path / "run", overrides=ov)
        assert srv.stats()["requests"] == 0
        pipeline.run_build("demo", tmp_path / "out2", tmp_path / "run2", overrides=ov)
        assert srv.stats()["requests"] == 0


def test_pipeline_with_llm_judge_scores_pairs_through_the_backend(tmp_path):
    """checks.judge=llm: the build's own backend judges in its judge role (its model), with the pair's media;
    its verdicts fill judge_score and decide check failures; a rerun asks the judge nothing again."""
    from acd import pipeline
    from acd.runstore import RunStore

    with OpenAITestServer(median=0.002) as srv:
        ov = {"source": {"counts": {"image": 4, "video": 2, "audio": 2}},
              "pairs": {"image": 12, "video": 6, "audio": 6}, "lot_size": 8,
              "checks": {"judge": "llm", "judge_sample_rate": 1.0, "content": ["grammar", "facts"]},
              "backend": {"name": "openai", "endpoints": [{"base_url": srv.base_url, "max_in_flight": 16}],
                          "models": {"instruct": "test-model", "chosen": "test-model", "rejected": "weak-model",
                                     "judge": "judge-model"},
                          "params": {"max_tokens": 256}, "cache_dir": str(tmp_path / "cache")}}
        pipeline.run_build("demo", tmp_path / "out", tmp_path / "run", overrides=ov)
        rows = RunStore(tmp_path / "run").sql("select check_failures, judge_score, check_passed from {generate}").to_pylist()
        judged = [r for r in rows if r["judge_score"] is not None]
        # Every pair the rules passed was judged (sample rate 1.0); scores are the server's 0-4 verdicts / 4.
        assert len(judged) >= 0.8 * len(rows) and all(0.0 <= r["judge_score"] <= 1.0 for r in judged)
        assert all(r["check_passed"] == (not r["check_failures"]) for r in rows)
        assert "judge_unavailable" not in {f for r in rows for f in r["check_failures"]}
        srv.reset()
        pipeline.run_build("demo", tmp_path / "out", tmp_path / "run", overrides=ov)
        assert srv.stats()["requests"] == 0
    with pytest.raises(ValueError, match="needs a model backend"):
        pipeline.run_build("demo", tmp_path / "out3", tmp_path / "run3",
                           overrides={"checks": {"judge": "llm"}, "pairs": {"image": 4, "video": 0, "audio": 0},
                                      "source": {"counts": {"image": 2, "video": 0, "audio": 0}}})


def test_a_hung_request_is_hedged_on_a_free_slot():
    """Once latencies are known, a request that hangs is sent again on a free slot and the copy answers,
    long before the request's own timeout."""
    with OpenAITestServer(median=0.005, sigma=0.2) as srv:
        b = make_backend(_cfg(srv, timeout_s=30))
        assert all(r.status == "ok" for r in b.generate(_requests(64, prefix="warm")))  # latencies known
        srv.set_faults(first_n=1, kinds=["timeout"], hang_s=120)  # every new request's first send hangs
        t0 = time.monotonic()
        hung = _requests(10, prefix="hung")
        for r in hung:  # new bodies (the warm-up's were seen already, and first_n counts per body)
            r.messages[1]["content"][0]["text"] += " Again."
        res = b.generate(hung)
        elapsed = time.monotonic() - t0
        assert all(r.status == "ok" and r.usage["attempts"] == 1 for r in res)
        assert b.stats["hedge_won"] == 10 and elapsed < 30  # not one timed out
        assert srv.stats()["outcomes"]["timeout"] == 10


def test_typed_section_slot_share_and_capabilities():
    """make_backend takes the recipe's typed section (or the same mapping); the process's slot share is its
    own argument; a backend declares its capabilities (its section's), never compared by name."""
    from acd.recipe_model import OpenAIBackend as Section

    section = Section(name="openai", base_url="http://127.0.0.1:9/v1/", model="m", rpm=600, tpm=6000)
    b = make_backend(section, slot_share=0.25)
    assert b.section is section and b.capabilities == Section.capabilities and b.capabilities.cacheable
    assert [(e.base_url, e.max_in_flight) for e in b.endpoints] == [("http://127.0.0.1:9/v1", 16)]  # 64 x 0.25
    assert (b.rpm, b.tpm, b.timeout_s, b.hedge, b.max_retries) == (150.0, 1500.0, 120.0, True, 5)
    same = make_backend({"name": "openai", "base_url": "http://127.0.0.1:9/v1/", "model": "m", "max_in_flight": 8})
    assert same.endpoints[0].max_in_flight == 8 and same.rpm is None
    assert make_backend({"name": "grounded"}).capabilities.offline
    with pytest.raises(ValueError, match="unknown backend 'opena'"):
        make_backend({"name": "opena"})
    with pytest.raises(ValueError, match="timeout"):  # unknown keys are refused (RecipeError is a ValueError)
        make_backend({"name": "openai", "base_url": "http://x/v1", "model": "m", "timeout": 3})
