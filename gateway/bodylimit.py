"""Request size limit: 413 before the body is read in full, as a plain ASGI middleware.

A ``Content-Length`` over the limit is refused before a byte of the body is read; a body
without one (chunked) is counted as it streams in and cut off at the limit: the 413 goes
out with ``Connection: close`` and the rest is never read. A body within the limit is
read here once and handed to the app, so the app never reads an unbounded body.
(Starlette's own limiter raises only when the app reads, and answers in plain text.)
"""

from __future__ import annotations

import json

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class BodyLimitMiddleware:
    def __init__(self, app, max_bytes: int, on_refused=None):
        self.app = app
        self.max_bytes = max_bytes
        self.on_refused = on_refused or (lambda: None)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send, f"the request body is {declared} bytes")
            return
        if scope.get("method") not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return                              # the client left: nothing to answer
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._refuse(send, f"the request body passed {self.max_bytes} bytes and was cut off")
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay_receive():
            return replay.pop() if replay else await receive()

        await self.app(scope, replay_receive, send)

    async def _refuse(self, send, what: str) -> None:
        self.on_refused()
        body = json.dumps({"error": {
            "type": "InputTooLargeError", "code": 413, "param": None,
            "message": f"{what}; the limit is {self.max_bytes} bytes (ELASTIQ_GATEWAY_MAX_BODY_BYTES)"}}).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope) -> int | None:
    for name, value in scope.get("headers") or ():
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None             # the HTTP server refuses a malformed one itself
    return None
