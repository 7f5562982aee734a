"""``POST /v1/embeddings`` and ``GET /v1/models``, as OpenAI's API has them.

The official ``openai`` SDK works unchanged (``OpenAI(base_url=".../v1", api_key=token)``).
It asks for ``encoding_format="base64"`` unless told otherwise: little-endian float32
bytes, base64-encoded, as OpenAI sends them. A long input list is cut into jobs of
``ELASTIQ_MAX_ITEMS_PER_JOB`` texts that run in parallel across the pool.
"""

from __future__ import annotations

import array
import asyncio
import base64
import sys

import orjson
from fastapi import APIRouter, Request, Response

from elastiq.errors import BadParamsError, InputTypeError
from gateway.schemas import (
    EmbeddingRequest,
    EmbeddingResponse,
    ErrorResponse,
    ModelList,
)

router = APIRouter(tags=["openai-compatible"])
INLINE_TOKENIZE_CHARS = 4096      # above this, count tokens off the event loop

ERRORS = {s: {"model": ErrorResponse} for s in (400, 401, 404, 413, 429, 503, 504)}


def encode_vector(vector: list[float], fmt: str):
    if fmt == "float":
        return vector
    packed = array.array("f", vector)
    if sys.byteorder == "big":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def texts_of(body: EmbeddingRequest) -> list[str]:
    value = body.input
    if isinstance(value, str):
        return [value]
    if value and not all(isinstance(x, str) for x in value):
        raise InputTypeError("input as token ids is not supported: send the text (a string or a list of strings)")
    return list(value)


@router.post("/v1/embeddings", response_model=EmbeddingResponse, responses=ERRORS,
             summary="Embed texts (OpenAI-compatible)")
async def embeddings(body: EmbeddingRequest, request: Request) -> Response:
    payload = await embed(request.app.state.service, body)
    return Response(payload, media_type="application/json")


async def embed(service, body: EmbeddingRequest) -> bytes:
    """The response body for a validated request (raises the typed errors the handlers map).
    Also served by :mod:`gateway.fastpath` for well-formed requests."""
    spec = service.registry.get(body.model)                     # 404 if unknown
    if spec.kind != "embed":
        raise BadParamsError(f"model {body.model!r} is a {spec.kind} model; /v1/embeddings serves "
                             f"embed models (use POST /v1/models/{body.model}/infer)")
    if body.dimensions is not None:
        raise BadParamsError(f"dimensions is not supported: model {body.model!r} returns its native size; "
                             "leave dimensions out")
    texts = texts_of(body)
    jobs = service.check_texts(body.model, texts)                # 400 / 413, nothing queued
    done = await service.run(body.model, jobs, {}, timeout=service.timeout(None))
    vectors = [v for _, result in done for v in result["outputs"]]
    tokens = await _count_tokens(service, spec, texts)
    data = [{"object": "embedding", "index": i, "embedding": encode_vector(v, body.encoding_format)}
            for i, v in enumerate(vectors)]
    payload = {"object": "list", "data": data, "model": body.model,
               "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
    return orjson.dumps(payload)              # compact; floats ≈ 12× faster than json.dumps


async def _count_tokens(service, spec, texts: list[str]) -> int | None:
    counter = service.tokens
    if sum(map(len, texts)) <= INLINE_TOKENIZE_CHARS:
        return counter.count(spec, texts)
    return await asyncio.get_running_loop().run_in_executor(None, counter.count, spec, texts)


@router.get("/v1/models", response_model=ModelList, summary="The models this pool serves")
async def models(request: Request) -> dict:
    registry = request.app.state.service.registry
    return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "elastiq",
                                        "kind": registry.get(name).kind} for name in registry.names()]}
