"""The gateway's small pure parts and ASGI middlewares, with stub apps: no services."""

from __future__ import annotations

import asyncio
import base64
import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from elastiq import errors
from elastiq.errors import BacklogFullError, JobFailedError, UnknownModelError
from elastiq.jobrecord import JobRecord
from gateway import http_errors, results
from gateway.backlog import _Reading, admit
from gateway.bodylimit import BodyLimitMiddleware
from gateway.routes_openai import encode_vector
from gateway.service import split_jobs
from gateway.submitter import Submitter


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=60), max_size=80), st.integers(1, 10), st.integers(200, 2000))
def test_split_jobs_keeps_order_and_limits(texts, max_items, max_bytes):
    jobs = split_jobs(texts, max_items, max_bytes)
    assert [t for job in jobs for t in job] == texts
    assert all(1 <= len(job) <= max_items for job in jobs)
    for job in jobs:
        size = len(json.dumps([job, {}], ensure_ascii=False).encode())
        assert size <= max_bytes or len(job) == 1      # one text over the budget is refused later


def test_base64_is_little_endian_float32():
    vector = [0.25, -1.5, 3.0e-5, 1.0]
    raw = base64.b64decode(encode_vector(vector, "base64"))
    assert struct.unpack("<4f", raw) == pytest.approx(vector, rel=1e-6)
    assert encode_vector(vector, "float") is vector


def test_results_from_celery_metas():
    ok = {"status": "SUCCESS", "result": {"outputs": [1], "timings": {}}}
    assert results.decode(json.dumps(ok)) == ok
    assert results.decode(json.dumps({"status": "PENDING"})) is None
    assert results.decode("not json") is None and results.decode(None) is None
    assert results.error_of(ok, "j") is None
    failed = {"status": "FAILURE", "result": {"exc_type": "UnknownModelError", "exc_message": ["no such"],
                                              "exc_module": "elastiq.errors"}}
    err = results.error_of(failed, "j")
    assert type(err) is UnknownModelError and str(err) == "no such"
    other = {"status": "FAILURE", "result": {"exc_type": "ZeroDivisionError", "exc_message": ["x"]}}
    assert isinstance(results.error_of(other, "j"), JobFailedError) and "ZeroDivisionError" in str(
        results.error_of(other, "j"))
    assert isinstance(results.error_of({"status": "REVOKED"}, "j"), JobFailedError)
    assert results.status_of(JobRecord(), None) == "unknown"
    assert results.status_of(JobRecord(state="queued"), None) == "queued"
    assert results.status_of(JobRecord(state="started"), ok) == "done"
    assert results.status_of(JobRecord(state="dead"), failed) == "dead"
    assert results.status_of(JobRecord(state="failed"), failed) == "failed"


@pytest.mark.parametrize("waiting,admitted,adding,bound,ok", [
    (0, 0, 1, 1, True), (1, 0, 1, 1, False), (5, 4, 1, 10, True), (5, 5, 1, 10, False),
    (0, 0, 3, 2, False), (9, 0, 1, 10, True),
])
def test_backlog_admission(waiting, admitted, adding, bound, ok):
    reading = _Reading(0.0, waiting, admitted)
    if ok:
        admit(reading, adding, bound, "m")
        assert reading.admitted == admitted + adding
    else:
        with pytest.raises(BacklogFullError, match=f"{waiting + admitted} jobs waiting"):
            admit(reading, adding, bound, "m")
        assert reading.admitted == admitted


def test_every_error_has_a_status_and_bad_input_is_never_5xx():
    assert http_errors.status_for(errors.UnknownModelError("x")) == 404
    assert http_errors.status_for(errors.UnknownJobError("x")) == 404
    assert http_errors.status_for(errors.InputTooLargeError("x")) == 413
    assert http_errors.status_for(errors.BacklogFullError("x")) == 429
    assert http_errors.status_for(errors.BrokerUnavailableError("x")) == 503
    assert http_errors.status_for(errors.JobTimeoutError("x")) == 504
    assert http_errors.status_for(errors.JobFailedError("x")) == 502
    for cls in errors.BY_NAME.values():
        if issubclass(cls, errors.ValidationError):
            assert 400 <= http_errors.status_for(cls("x")) < 500, cls


def run_asgi(app, headers, chunks):
    """Drive an ASGI app with a request body in ``chunks``; return (status, body, chunks read)."""
    sent, read = [], [0]
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
                for i, c in enumerate(chunks)] or [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive():
        read[0] += 1
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/x",
             "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"), read[0]


async def echo_app(scope, receive, send):
    body = b""
    while True:
        m = await receive()
        body += m.get("body", b"")
        if not m.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def test_body_limit_refuses_before_reading():
    app = BodyLimitMiddleware(echo_app, max_bytes=10)
    status, body, read = run_asgi(app, {"content-length": "11"}, [b"x" * 11])
    assert status == 413 and read == 0 and b"InputTooLargeError" in body       # not one chunk read
    status, body, read = run_asgi(app, {}, [b"x" * 4] * 100)                   # chunked, no length
    assert status == 413 and read == 3                                          # cut off at 12 bytes
    status, body, _ = run_asgi(app, {}, [b"ab", b"cd", b"ef"])
    assert (status, body) == (200, b"abcdef")


class StubClient:
    """Records submit_many calls (a stub in a unit test of the coalescing logic)."""

    def __init__(self, calls, fail=None):
        self.calls, self.fail = calls, fail

    def submit_many(self, model, many, **kw):
        self.calls.append((model, [list(x) for x in many], kw))
        if self.fail:
            raise self.fail

        class J:
            def __init__(self, i):
                self.id = i
        return [J(i) for i in kw["job_ids"]]          # the ids the gateway chose

    def close(self):
        pass


def test_submitter_coalesces_one_tick_into_one_call_per_group():
    calls = []
    sub = Submitter(lambda: StubClient(calls), threads=2)

    async def main():
        a = [sub.submit("m", [f"t{i}"], {}, job_id=f"m-t{i}") for i in range(40)]
        b = [sub.submit("m", [f"p{i}"], {"top_k": 2}, job_id=f"m-p{i}") for i in range(5)]
        c = [sub.submit("other", [f"o{i}"], {}, job_id=f"other-o{i}") for i in range(3)]
        return await asyncio.gather(*a, *b, *c)

    ids = asyncio.run(main())
    sub.close()
    assert ids == [f"m-t{i}" for i in range(40)] + [f"m-p{i}" for i in range(5)] + [f"other-o{i}" for i in range(3)]
    assert sorted(len(many) for _, many, _ in calls) == [3, 5, 40]          # one call per group
    assert {(m, kw.get("top_k")) for m, _, kw in calls} == {("m", None), ("m", 2), ("other", None)}
    assert all([x[0][1:] for x in many] == [i.split("-", 1)[1][1:] for i in kw["job_ids"]]
               for _, many, kw in calls)                                   # each job kept its id


def test_submitter_failure_reaches_every_request_of_the_batch():
    sub = Submitter(lambda: StubClient([], fail=errors.BrokerUnavailableError("down")), threads=1)

    async def main():
        return await asyncio.gather(*(sub.submit("m", [str(i)], {}, job_id=f"j{i}") for i in range(5)),
                                    return_exceptions=True)

    out = asyncio.run(main())
    sub.close()
    assert all(isinstance(e, errors.BrokerUnavailableError) for e in out)


class UnknownModels:
    """A registry that knows no model: the fast path's typed-error branch, no service needed."""

    def get(self, name):
        raise UnknownModelError(f"unknown model {name!r}")


def drive_fast_path(path, ctype, body):
    """Run EmbeddingsFastPath over ``echo_app``; return (status, body, whether the app ran)."""
    from types import SimpleNamespace

    from gateway.fastpath import EmbeddingsFastPath

    ran, sent = [], []

    async def inner(scope, receive, send):
        ran.append(True)
        await echo_app(scope, receive, send)

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    state = SimpleNamespace(service=SimpleNamespace(registry=UnknownModels()))
    scope = {"type": "http", "method": "POST", "path": path, "headers": [(b"content-type", ctype)]}
    asyncio.run(EmbeddingsFastPath(inner, state)(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"), bool(ran)


def test_embeddings_fast_path_answers_well_formed_requests_and_hands_on_the_rest():
    good = json.dumps({"model": "nope", "input": "hi"}).encode()
    status, body, ran = drive_fast_path("/v1/embeddings", b"application/json; charset=utf-8", good)
    assert (status, ran) == (404, False)                               # answered here, with the handler's body
    assert json.loads(body)["error"]["type"] == "UnknownModelError"
    for path, ctype, raw in (("/v1/embeddings", b"application/json", b'{"model": 1, "input": "hi"}'),
                             ("/v1/embeddings", b"application/json", b"{not json"),
                             ("/v1/embeddings", b"text/plain", good),
                             ("/v1/models/x/infer", b"application/json", good)):
        status, body, ran = drive_fast_path(path, ctype, raw)
        assert (status, body, ran) == (200, raw, True)                 # the app got the body, byte for byte
