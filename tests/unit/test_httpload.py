"""The gateway benchmark's HTTP load generator: request bytes and response framing."""

from __future__ import annotations

import asyncio
import base64
import json
import struct

import pytest

from benchmarks.httpload import read_response, request_bytes, vector_of


def parse(raw: bytes):
    async def main():
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        first = await read_response(reader)
        return first, await reader.read()
    return asyncio.run(main())


def test_request_is_one_keep_alive_post_with_the_sdk_body():
    raw = request_bytes("127.0.0.1:8000", "tok", "héllo \"x\"", "base64")
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/embeddings HTTP/1.1"
    assert b"Authorization: Bearer tok" in lines and b"Host: 127.0.0.1:8000" in lines
    assert f"Content-Length: {len(body)}".encode() in lines
    assert json.loads(body) == {"model": "minilm", "input": "héllo \"x\"", "encoding_format": "base64"}


def test_responses_are_framed_by_content_length_and_close_is_seen():
    body = b'{"a": 1}'
    one = b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\ncontent-type: application/json\r\n\r\n" + body
    two = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    (status, got, closes), rest = parse(one + two)
    assert (status, got, closes, rest) == (200, body, False, two)      # the next response left unread
    (status, got, closes), _ = parse(two)
    assert (status, got, closes) == (413, b"{}", True)
    with pytest.raises(ValueError, match="Content-Length"):
        parse(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n")


def test_vectors_decode_from_both_encodings():
    vec = [0.5, -0.25, 1.0]
    packed = base64.b64encode(struct.pack("<3f", *vec)).decode()
    for emb in (vec, packed):
        assert vector_of(json.dumps({"data": [{"embedding": emb}]}).encode()) == vec
