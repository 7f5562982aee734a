"""``POST /v1/embeddings`` without the framework's per-request machinery, for well-formed requests.

The hot path of the gateway under load is a small JSON body in, a small JSON body out; the
FastAPI route around it (router matching, dependency solving, a ``Request`` object, JSON
decoding then validation in two passes, a ``Response`` object, two more middlewares) cost
about as much CPU as the work itself. This ASGI middleware sits innermost (after metrics,
auth and the body limit, so those apply unchanged) and answers a ``POST /v1/embeddings``
with a JSON content type whose body parses as an :class:`~gateway.schemas.EmbeddingRequest`
in one pass (pydantic's JSON mode, the same strict model); the response is the route's,
byte for byte (:func:`gateway.routes_openai.embed`), and a typed error gets the same
status and body as the exception handler gives it. Anything else -- a body that does not
parse or validate, another content type, another path -- goes to the FastAPI app as is,
with its body replayed, so every error message stays the route's own.
"""

from __future__ import annotations

from pydantic import ValidationError as ShapeError

from elastiq.errors import ElastiqError
from gateway.http_errors import error_response
from gateway.routes_openai import embed
from gateway.schemas import EmbeddingRequest

PATH = "/v1/embeddings"
HEADERS = [(b"content-type", b"application/json")]


def is_json(scope) -> bool:
    for name, value in scope.get("headers") or ():
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == b"application/json"
    return False


class EmbeddingsFastPath:
    def __init__(self, app, state):
        self.app = app
        self.state = state                      # the FastAPI app's state: .service once started

    async def __call__(self, scope, receive, send) -> None:
        if (scope["type"] != "http" or scope.get("path") != PATH or scope.get("method") != "POST"
                or not is_json(scope)):
            await self.app(scope, receive, send)
            return
        message = await receive()
        try:
            if message.get("type") != "http.request" or message.get("more_body"):
                raise ValueError("not a whole body")      # (the body limit hands over whole bodies)
            body = EmbeddingRequest.model_validate_json(message.get("body", b""))
        except (ShapeError, ValueError):
            replay = [message]

            async def replay_receive():
                return replay.pop() if replay else await receive()

            await self.app(scope, replay_receive, send)
            return
        await self._answer(body, scope, receive, send)

    async def _answer(self, body: EmbeddingRequest, scope, receive, send) -> None:
        try:
            payload = await embed(self.state.service, body)
        except ElastiqError as exc:
            await error_response(exc)(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(payload)).encode()), *HEADERS]})
        await send({"type": "http.response.body", "body": payload})
