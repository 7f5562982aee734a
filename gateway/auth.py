"""Bearer-token auth, as a plain ASGI middleware in front of everything but ``/healthz``.

The presented token is compared with *every* configured token by
:func:`hmac.compare_digest` (no early exit), so timing tells nothing about which token,
or how much of one, matched. It runs before the body is read: an unauthenticated
client cannot make the gateway buffer a body.
"""

from __future__ import annotations

import hmac
import json

OPEN_PATHS = frozenset({"/healthz"})


class TokenSet:
    def __init__(self, tokens: tuple[str, ...]):
        self._tokens = tuple(t.encode("utf-8") for t in tokens)

    def __bool__(self) -> bool:
        return bool(self._tokens)

    def check(self, authorization: bytes | None) -> bool:
        """True if ``authorization`` is ``Bearer <one of the tokens>``."""
        if not authorization:
            return False
        scheme, _, presented = authorization.partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        presented = presented.strip()
        ok = False
        for token in self._tokens:
            ok |= hmac.compare_digest(presented, token)
        return ok


def bearer_of(scope) -> bytes | None:
    for name, value in scope.get("headers") or ():
        if name == b"authorization":
            return value
    return None


class AuthMiddleware:
    """401 unless the request carries a valid bearer token (or the path is open)."""

    def __init__(self, app, tokens: TokenSet):
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope, receive, send) -> None:
        if (scope["type"] != "http" or not self.tokens or scope.get("path") in OPEN_PATHS
                or self.tokens.check(bearer_of(scope))):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"error": {
            "type": "AuthenticationError", "code": 401, "param": None,
            "message": "missing or invalid bearer token (send 'Authorization: Bearer <token>')"}}).encode()
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b'Bearer realm="elastiq"')]})
        await send({"type": "http.response.body", "body": body})
