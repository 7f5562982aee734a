"""Request and response bodies (they are the OpenAPI document: docs/openapi.json).

Requests are strict (no silent coercion: ``"1"`` is not an int, ``true`` is not a
number); the job endpoints refuse unknown fields, the OpenAI-compatible one ignores them
as OpenAI's clients expect. Input rules (sizes, emptiness, params) are
:func:`elastiq.validate.validate_job`'s, applied after this shape check.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


def priority_field():
    return Field(None, ge=0, le=9, description="0 runs first, 9 last (Celery priority steps)")


def deadline_field():
    return Field(None, gt=0, allow_inf_nan=False,
                 description="drop the job, unrun, if it waits longer than this many seconds")


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


# --- OpenAI-compatible embeddings


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    input: str | list[str] | list[int] | list[list[int]] = Field(
        description="a text or a list of texts (token-id arrays are refused: send text)")
    model: str
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="base64 = little-endian float32 bytes, as OpenAI sends them")
    dimensions: int | None = Field(None, description="refused: the models return their native size")
    user: str | None = Field(None, description="accepted and ignored")


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    prompt_tokens: int | None = Field(description="token positions the model ran over (its tokenizer, "
                                                  "special tokens included, truncated as the worker does)")
    total_tokens: int | None


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


# --- jobs


class JobRequest(Strict):
    inputs: list[str] = Field(description="the texts of one job")
    params: dict[str, Any] | None = Field(None, description="model-kind parameters, e.g. {\"top_k\": 2}")
    priority: int | None = priority_field()
    deadline_s: float | None = deadline_field()


class InferRequest(JobRequest):
    timeout_s: float | None = Field(None, gt=0, allow_inf_nan=False,
                                    description="how long to wait (default and cap: the gateway's settings)")


class InferResponse(BaseModel):
    job_id: str
    model: str
    status: Literal["done"] = "done"
    outputs: list[Any]
    timings: dict[str, Any]
    model_version: str | None = Field(None, description="the published version that answered (store: models only)")


class JobAccepted(BaseModel):
    job_id: str
    model: str
    status: Literal["queued"] = "queued"
    url: str = Field(description="GET it for the status and result")


class JobResult(BaseModel):
    outputs: list[Any]
    timings: dict[str, Any]
    model_version: str | None = Field(None, description="the published version that answered (store: models only)")


class JobErrorInfo(BaseModel):
    type: str
    message: str


class JobView(BaseModel):
    job_id: str
    model: str | None
    status: Literal["queued", "started", "done", "failed", "dead", "unknown"]
    submitted_at: float | None
    result: JobResult | None
    error: JobErrorInfo | None


# --- the rest


class ModelInfo(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "elastiq"
    kind: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelInfo]


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    redis: bool
    results_subscription: bool


class ErrorDetail(BaseModel):
    type: str
    message: str
    code: int
    param: str | None = None
    job_id: str | None = Field(None, description="504: the job goes on; fetch it at job_url")
    job_url: str | None = None
    job_ids: list[str] | None = None
    job_urls: list[str] | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
