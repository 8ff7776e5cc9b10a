"""The test server's Batch API driven through the official openai SDK (files, batches) over real sockets: the
answers equal the online endpoint's, expiry and cancel keep partial results, bad input files and the enqueued-
token limit fail the batch as OpenAI does, listing pages like OpenAI's, and /stats counts every line answered."""
from __future__ import annotations

import asyncio
import time

import openai
import orjson
import pytest

from acd.testing.openai_server import OpenAITestServer

pytestmark = pytest.mark.timeout(60)

ENDPOINT = "/v1/chat/completions"


def _lines(n: int, prefix: str = "r", model: str = "test-model", text: str = "Describe item number {i}.") -> list[dict]:
    return [{"custom_id": f"{prefix}{i}", "method": "POST", "url": ENDPOINT,
             "body": {"model": model, "max_tokens": 64,
                      "messages": [{"role": "system", "content": "You caption."},
                                   {"role": "user", "content": text.format(i=i)}]}}
            for i in range(n)]


def _jsonl(rows: list) -> bytes:
    return b"".join((r if isinstance(r, bytes) else orjson.dumps(r)) + b"\n" for r in rows)


def _client(srv: OpenAITestServer, key: str = "sk-test") -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.base_url, api_key=key, max_retries=0, timeout=10)


def _submit(c: openai.OpenAI, rows: list, **kw):
    f = c.files.create(file=("input.jsonl", _jsonl(rows)), purpose="batch")
    return c.batches.create(input_file_id=f.id, endpoint=ENDPOINT, completion_window="24h", **kw)


def _wait(c: openai.OpenAI, batch_id: str, until=("completed", "failed", "expired", "cancelled"), timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        b = c.batches.retrieve(batch_id)
        if b.status in until:
            return b
        assert time.monotonic() < deadline, f"batch stuck in {b.status}"
        time.sleep(0.02)


def _read(c: openai.OpenAI, file_id: str | None) -> list[dict]:
    data = b"" if file_id is None else c.files.content(file_id).content
    return [orjson.loads(ln) for ln in data.split(b"\n") if ln]  # JSONL: "\n" ends a line, nothing else


def test_happy_path_answers_equal_the_online_answers():
    with OpenAITestServer() as srv:
        c = _client(srv)
        rows = _lines(8) + _lines(4, prefix="w", model="weak-model")  # models may differ between lines
        rows[3]["body"]["messages"][1]["content"] += " Line\u2028separators stay inside a JSONL line."
        f = c.files.create(file=("input.jsonl", _jsonl(rows)), purpose="batch")
        assert (f.object, f.purpose, f.status, f.bytes, f.filename) == ("file", "batch", "processed",
                                                                          len(_jsonl(rows)), "input.jsonl")
        assert f.id.startswith("file-") and c.files.retrieve(f.id) == f
        assert c.files.content(f.id).content == _jsonl(rows)  # stored byte for byte
        b = c.batches.create(input_file_id=f.id, endpoint=ENDPOINT, completion_window="24h", metadata={"lot": "7"})
        assert b.status == "validating" and b.id.startswith("batch_") and b.metadata == {"lot": "7"}
        b = _wait(c, b.id)
        assert b.status == "completed" and b.error_file_id is None and b.errors is None
        assert b.created_at <= b.in_progress_at <= b.finalizing_at <= b.completed_at < b.expires_at
        assert (b.request_counts.total, b.request_counts.completed, b.request_counts.failed) == (12, 12, 0)

        out = _read(c, b.output_file_id)
        assert c.files.retrieve(b.output_file_id).purpose == "batch_output"
        assert sorted(o["custom_id"] for o in out) == sorted(r["custom_id"] for r in rows)
        assert [o["custom_id"] for o in out] != [r["custom_id"] for r in rows]  # OpenAI keeps no order either
        by_id = {o["custom_id"]: o for o in out}
        for r in rows:
            o = by_id[r["custom_id"]]
            assert o["id"].startswith("batch_req_") and o["error"] is None
            assert o["response"]["status_code"] == 200 and o["response"]["request_id"].startswith("req_")
            online = c.chat.completions.create(**r["body"])
            assert o["response"]["body"]["choices"][0]["message"]["content"] == online.choices[0].message.content
            assert o["response"]["body"]["usage"] == online.usage.model_dump(exclude_none=True)
            assert o["response"]["body"]["model"] == r["body"]["model"]

        st = srv.stats()
        bst = st["batch"]
        assert (bst["files_uploaded"], bst["batches_created"], bst["batches"]) == (1, 1, {"completed": 1})
        assert (bst["lines_processed"], bst["lines_distinct"], bst["max_processed_per_custom_id"]) == (12, 12, 1)
        assert bst["usage"] == st["usage"]  # the same bodies answered online bill the same tokens
        assert b.usage.input_tokens == bst["usage"]["prompt_tokens"]
        assert b.usage.output_tokens == bst["usage"]["completion_tokens"]
        assert bst["usage_by_model"]["weak-model"]["requests"] == 4
        assert bst["enqueued_tokens"] == {} and bst["in_flight"] == 0

        assert c.files.delete(f.id).deleted is True
        with pytest.raises(openai.NotFoundError):
            c.files.retrieve(f.id)


def test_forced_expiry_keeps_partial_results_and_only_the_first_batch_expires():
    with OpenAITestServer(batch={"expire_first": 0.3}) as srv:
        c = _client(srv)
        rows = _lines(20)
        b = _wait(c, _submit(c, rows).id)
        assert b.status == "expired" and b.expired_at is not None and b.completed_at is None
        assert (b.request_counts.total, b.request_counts.completed, b.request_counts.failed) == (20, 14, 0)
        out, err = _read(c, b.output_file_id), _read(c, b.error_file_id)
        assert len(out) == 14 and all(o["response"]["status_code"] == 200 for o in out)
        assert len(err) == 6  # 30% unfinished, one error line each
        for e in err:
            assert e["response"] is None and e["error"]["code"] == "batch_expired" and e["error"]["message"]
        assert {o["custom_id"] for o in out} | {e["custom_id"] for e in err} == {r["custom_id"] for r in rows}
        assert not {o["custom_id"] for o in out} & {e["custom_id"] for e in err}

        # A client resubmits everything (the worst case): the second batch is not forced to expire.
        b2 = _wait(c, _submit(c, rows).id)
        assert b2.status == "completed" and b2.request_counts.completed == 20
        bst = srv.stats()["batch"]
        assert bst["batches"] == {"expired": 1, "completed": 1}
        assert (bst["lines_processed"], bst["lines_distinct"], bst["max_processed_per_custom_id"]) == (34, 20, 2)
        assert sorted(set(bst["per_custom_id"].values())) == [1, 2]


def test_completion_window_passing_expires_the_batch():
    with OpenAITestServer(batch={"completion_window_s": 1.0, "lines_per_s": 25}) as srv:
        c = _client(srv)
        b = _wait(c, _submit(c, _lines(100)).id)
        assert b.status == "expired"
        out, err = _read(c, b.output_file_id), _read(c, b.error_file_id)
        assert 1 <= len(out) == b.request_counts.completed < 100
        assert len(out) + len(err) == 100 and {e["error"]["code"] for e in err} == {"batch_expired"}
        assert srv.stats()["batch"]["lines_processed"] == len(out)


def test_cancel_keeps_partial_results():
    with OpenAITestServer(batch={"lines_per_s": 25}) as srv:
        c = _client(srv)
        b = _submit(c, _lines(100))
        deadline = time.monotonic() + 10
        while c.batches.retrieve(b.id).request_counts.completed < 3:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        cancelling = c.batches.cancel(b.id)
        assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
        b = _wait(c, b.id)
        assert b.status == "cancelled" and b.cancelled_at is not None
        out, err = _read(c, b.output_file_id), _read(c, b.error_file_id)
        assert 3 <= len(out) == b.request_counts.completed < 100
        assert len(out) + len(err) == 100
        assert {e["error"]["code"] for e in err} == {"batch_cancelled"} and all(e["response"] is None for e in err)
        assert srv.stats()["batch"]["lines_processed"] == len(out)  # nothing ran after the cancel
        with pytest.raises(openai.ConflictError):
            c.batches.cancel(b.id)


def test_cancel_while_validating_runs_nothing():
    with OpenAITestServer(batch={"validating_s": 0.3}) as srv:
        c = _client(srv)
        b = _submit(c, _lines(5))
        assert c.batches.cancel(b.id).status == "cancelling"
        b = _wait(c, b.id)
        assert b.status == "cancelled" and b.output_file_id is None and b.error_file_id is None
        assert srv.stats()["batch"]["lines_processed"] == 0


BAD_FILES = {
    "duplicate_custom_id": (_lines(2) + _lines(1), {}, 3, "custom_id"),
    "invalid_json_line": (_lines(1) + [b'{"custom_id": "x", "method": '] + _lines(2, prefix="z"), {}, 2, None),
    "missing_required_parameter": (_lines(1) + [{"custom_id": "nb", "method": "POST", "url": ENDPOINT}], {}, 2,
                                   "body"),
    "url_mismatch": ([{**_lines(1)[0], "url": "/v1/embeddings"}], {}, 1, "url"),
    "too_many_tasks": (_lines(6), {"max_lines": 5}, None, None),
    "file_too_large": (_lines(3), {"max_bytes": 200}, None, None),
    "empty_file": ([], {}, None, None),
}


@pytest.mark.parametrize("code", sorted(BAD_FILES))
def test_a_bad_input_file_fails_the_batch(code):
    rows, knobs, line, param = BAD_FILES[code]
    with OpenAITestServer(batch=knobs) as srv:
        c = _client(srv)
        b = _wait(c, _submit(c, rows).id)
        assert b.status == "failed" and b.failed_at is not None and b.in_progress_at is None
        assert b.output_file_id is None and b.error_file_id is None
        assert b.errors.object == "list"
        e = b.errors.data[0]
        assert (e.code, e.line, e.param) == (code, line, param) and e.message
        bst = srv.stats()["batch"]
        assert bst["batches"] == {"failed": 1} and bst["failed_codes"] == {code: 1} and bst["lines_processed"] == 0


def test_enqueued_token_limit_is_per_model_and_frees_when_a_batch_ends():
    text = "x" * 40 + " {i}"  # 10 prompt tokens a line under the text usage rule (43 characters // 4)
    with OpenAITestServer(batch={"enqueued_token_limit": 100, "lines_per_s": 0}) as srv:  # 0: batches hold
        c = _client(srv)
        a = _submit(c, _lines(6, prefix="a", text=text))  # 60 tokens held by a batch in progress
        assert _wait(c, a.id, until=("in_progress",)).status == "in_progress"
        over = _wait(c, _submit(c, _lines(5, prefix="b", text=text)).id)  # 60 + 50 > 100
        assert over.status == "failed"
        assert [(e.code, e.line) for e in over.errors.data] == [("token_limit_exceeded", None)]
        assert "test-model" in over.errors.data[0].message
        other = _submit(c, _lines(5, prefix="w", model="weak-model", text=text))  # another model's budget
        assert _wait(c, other.id, until=("in_progress", "failed")).status == "in_progress"
        assert srv.stats()["batch"]["enqueued_tokens"] == {"test-model": 60, "weak-model": 50}

        assert _wait(c, c.batches.cancel(a.id).id).status == "cancelled"  # frees its 60 tokens
        srv.set_batch(lines_per_s=2000)
        again = _wait(c, _submit(c, _lines(5, prefix="b", text=text)).id)
        assert again.status == "completed"
        assert _wait(c, other.id).status == "completed"
        bst = srv.stats()["batch"]
        assert bst["batches"] == {"failed": 1, "cancelled": 1, "completed": 2} and bst["enqueued_tokens"] == {}
        assert bst["failed_codes"] == {"token_limit_exceeded": 1}
        # A batch alone above the limit fails too.
        assert _wait(c, _submit(c, _lines(11, prefix="big", text=text)).id).status == "failed"


def test_a_500_fault_is_an_error_file_line_and_429_is_not_a_batch_fault():
    with OpenAITestServer(faults={"first_n": 1, "kinds": ["500"]}) as srv:
        c = _client(srv)
        rows = _lines(5)
        b = _wait(c, _submit(c, rows).id)
        assert b.status == "completed" and b.output_file_id is None  # OpenAI: output file = successes only
        assert (b.request_counts.completed, b.request_counts.failed) == (0, 5)
        for e in _read(c, b.error_file_id):
            assert e["error"] is None and e["response"]["status_code"] == 500
            assert e["response"]["body"]["error"]["type"] == "server_error"
        b = _wait(c, _submit(c, rows).id)  # second attempt of each body: answered
        assert (b.request_counts.completed, b.error_file_id) == (5, None)
        assert srv.stats()["batch"]["outcomes"] == {"500": 5, "ok": 5}
        assert srv.stats()["batch"]["usage"]["prompt_tokens"] > 0  # only the answered lines bill

        srv.set_faults(rate=1.0, first_n=0, kinds=["429"])  # a rate limit is not a per-line thing in batch
        b = _wait(c, _submit(c, _lines(3, prefix="q")).id)
        assert (b.status, b.request_counts.completed) == ("completed", 3)


def test_listing_pages_newest_first_with_the_async_client():
    with OpenAITestServer() as srv:
        async def run() -> None:
            c = openai.AsyncOpenAI(base_url=srv.base_url, api_key="sk-test", max_retries=0, timeout=10)
            f = await c.files.create(file=("input.jsonl", _jsonl(_lines(2))), purpose="batch")
            ids = []
            for _ in range(3):
                ids.append((await c.batches.create(input_file_id=f.id, endpoint=ENDPOINT,
                                                   completion_window="24h")).id)
            first = await c.batches.list(limit=2)
            assert [b.id for b in first.data] == ids[::-1][:2] and first.has_more is True
            rest = await c.batches.list(limit=2, after=first.data[-1].id)
            assert [b.id for b in rest.data] == ids[:1] and rest.has_more is False
            assert [b.id async for b in c.batches.list(limit=2)] == ids[::-1]  # the SDK's auto-pagination
            with pytest.raises(openai.BadRequestError):
                await c.batches.list(limit=101)
            for i in ids:
                while (await c.batches.retrieve(i)).status != "completed":
                    await asyncio.sleep(0.02)
            outputs = [fo.id async for fo in c.files.list(purpose="batch_output")]
            inputs = [fo.id async for fo in c.files.list(purpose="batch")]
            assert len(outputs) == 3 and inputs == [f.id]
            await c.close()

        asyncio.run(run())


def test_bad_requests_are_refused_as_openai_does():
    with OpenAITestServer() as srv:
        c = _client(srv)
        with pytest.raises(openai.BadRequestError):  # the Batch API takes .jsonl only
            c.files.create(file=("input.csv", b"a,b\n"), purpose="batch")
        with pytest.raises(openai.NotFoundError):
            c.batches.create(input_file_id="file-nope", endpoint=ENDPOINT, completion_window="24h")
        f = c.files.create(file=("input.jsonl", _jsonl(_lines(1))), purpose="batch")
        with pytest.raises(openai.BadRequestError):  # this server batches chat completions only
            c.batches.create(input_file_id=f.id, endpoint="/v1/embeddings", completion_window="24h")
        with pytest.raises(openai.BadRequestError):
            c.batches.create(input_file_id=f.id, endpoint=ENDPOINT, completion_window="48h")
        with pytest.raises(openai.NotFoundError):
            c.batches.retrieve("batch_nope")
        with pytest.raises(ValueError):  # knobs are typed: a misspelt one is refused
            srv.set_batch(expire_frist=0.3)
        assert srv.stats()["batch"]["batches_created"] == 0


def test_auth_reset_and_a_separate_process():
    with OpenAITestServer(api_key="sk-right", process=True, batch={"max_lines": 2}) as srv:
        with pytest.raises(openai.AuthenticationError):
            _client(srv, key="sk-wrong").files.list()
        c = _client(srv, key="sk-right")
        b = _wait(c, _submit(c, _lines(3)).id)  # the knob came through the command line
        assert (b.status, b.errors.data[0].code) == ("failed", "too_many_tasks")
        done = _wait(c, _submit(c, _lines(2)).id)
        assert done.status == "completed"
        srv.reset()  # counters start again; stored files and batches stay
        bst = srv.stats()["batch"]
        assert (bst["files_uploaded"], bst["batches_created"], bst["lines_processed"]) == (0, 0, 0)
        assert c.batches.retrieve(done.id).status == "completed" and _read(c, done.output_file_id)


def test_ids_do_not_repeat_across_server_restarts():
    """A client resuming with a stored batch id must not find another batch under it on a restarted server."""
    ids = []
    for _ in range(2):
        with OpenAITestServer(seed=0) as srv:
            c = _client(srv)
            if ids:
                with pytest.raises(openai.NotFoundError):
                    c.batches.retrieve(ids[0])
            ids.append(_submit(c, _lines(1)).id)
    assert ids[0] != ids[1]
