"""Every error gets an HTTP status and one JSON body shape (OpenAI's)::

    {"error": {"type": "InputTooLargeError", "message": "...", "code": 413, "param": null}}

| error | status |
|---|---|
| ``UnknownModelError``, ``UnknownJobError``, an unknown path | 404 |
| ``InputTooLargeError`` (a text, item count, job or body over its limit) | 413 |
| any other ``ValidationError``, a malformed body | 400 |
| ``BacklogFullError`` | 429 (+ ``Retry-After``) |
| ``BrokerUnavailableError`` (Redis unreachable; ``BrokerFullError``: at maxmemory) | 503 (+ ``Retry-After``) |
| ``JobTimeoutError`` (a sync wait ran out; the job goes on: the body gives its id and URL), ``JobExpiredError`` | 504 |
| ``JobFailedError``, ``DeadLetteredError``, ``ModelLoadError`` (the worker failed) | 502 |

Bad input is never a 500; a 500 means a bug here, and is logged.
"""

from __future__ import annotations

import logging

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from elastiq.errors import (
    BacklogFullError,
    BrokerUnavailableError,
    DeadLetteredError,
    ElastiqError,
    InputTooLargeError,
    JobExpiredError,
    JobFailedError,
    JobTimeoutError,
    ModelLoadError,
    UnknownJobError,
    UnknownModelError,
    ValidationError,
)

log = logging.getLogger(__name__)

STATUS: tuple[tuple[type[ElastiqError], int], ...] = (
    (UnknownModelError, 404), (UnknownJobError, 404), (InputTooLargeError, 413),
    (ValidationError, 400), (BacklogFullError, 429), (BrokerUnavailableError, 503),
    (JobTimeoutError, 504), (JobExpiredError, 504), (JobFailedError, 502),
    (DeadLetteredError, 502), (ModelLoadError, 502),
)
RETRY_AFTER_S = {429: "1", 503: "2"}


class SyncTimeoutError(JobTimeoutError):
    """A sync request's wait ran out; its job(s) are still queued or running."""

    def __init__(self, message: str, job_ids: list[str]):
        super().__init__(message)
        self.job_ids = job_ids


def status_for(exc: ElastiqError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def body(kind: str, message: str, status: int, **extra) -> dict:
    return {"error": {"type": kind, "message": message, "code": status, "param": None, **extra}}


def error_response(exc: ElastiqError) -> JSONResponse:
    status = status_for(exc)
    extra, headers = {}, {}
    if isinstance(exc, SyncTimeoutError):
        urls = [f"/v1/jobs/{i}" for i in exc.job_ids]
        extra = {"job_id": exc.job_ids[0], "job_url": urls[0], "job_ids": exc.job_ids, "job_urls": urls}
        headers["Location"] = urls[0]
    if status in RETRY_AFTER_S:
        headers["Retry-After"] = RETRY_AFTER_S[status]
    if status == 500:
        log.error("unmapped elastiq error: %r", exc)
    kind = "JobTimeoutError" if isinstance(exc, SyncTimeoutError) else type(exc).__name__
    return JSONResponse(body(kind, str(exc), status, **extra), status, headers=headers)


def install(app) -> None:
    """Exception handlers: typed errors, malformed bodies, framework errors, bugs."""

    @app.exception_handler(ElastiqError)
    async def _elastiq(request, exc: ElastiqError):
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc: RequestValidationError):
        ctype = request.headers.get("content-type", "")
        if "json" not in ctype.lower():
            message = f"send a JSON body with Content-Type: application/json (got {ctype[:60]!r})"
        else:
            message = describe(exc.errors())
        return JSONResponse(body("ValidationError", message, 400), 400)

    @app.exception_handler(HTTPException)
    async def _http(request, exc: HTTPException):
        kind = {400: "ValidationError", 404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
        return JSONResponse(body(kind, str(exc.detail), exc.status_code), exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(request, exc: Exception):
        log.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse(body("InternalError", "internal error (logged by the gateway)", 500), 500)


def describe(errors) -> str:
    """A short message from pydantic's errors: 'body.input: Input should be ...; ...'."""
    parts = []
    for e in list(errors)[:5]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
        msg = e.get("msg", "invalid")
        if e.get("type") == "json_invalid":
            msg = f"the body is not valid JSON ({(e.get('ctx') or {}).get('error', 'decode error')})"
            loc = "body"
        parts.append(f"{loc}: {msg}")
    more = len(list(errors)) - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
