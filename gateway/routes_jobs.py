"""The job endpoints: any model kind, any language.

- ``POST /v1/models/{model}/infer``: one job, wait for it (``timeout_s``); a 504 names the
  job and its URL: the job goes on and its result can be fetched later.
- ``POST /v1/models/{model}/jobs``: one job, ``202`` + ``Location: /v1/jobs/{id}`` at once.
- ``GET /v1/jobs/{job_id}``: status (queued, started, done, failed, dead), result, timings.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request, Response

from gateway.schemas import (
    ErrorResponse,
    InferRequest,
    InferResponse,
    JobAccepted,
    JobRequest,
    JobView,
)

router = APIRouter(tags=["jobs"])


def _errors(*codes: int) -> dict:
    return {s: {"model": ErrorResponse} for s in codes}


@router.post("/v1/models/{model}/infer", response_model=InferResponse,
             responses=_errors(400, 401, 404, 413, 429, 502, 503, 504), summary="Run one job and wait for it")
async def infer(model: str, body: InferRequest, request: Request) -> Response:
    service = request.app.state.service
    model, inputs, params = service.check_job(model, body.inputs, body.params)
    [(job_id, result)] = await service.run(model, [inputs], params, timeout=service.timeout(body.timeout_s),
                                           priority=body.priority, deadline_s=body.deadline_s)
    payload = {"job_id": job_id, "model": model, "status": "done", "outputs": result["outputs"],
               "timings": result.get("timings", {})}
    if result.get("model_version"):
        payload["model_version"] = result["model_version"]
    return Response(json.dumps(payload, separators=(",", ":")), media_type="application/json")


@router.post("/v1/models/{model}/jobs", status_code=202, response_model=JobAccepted,
             responses=_errors(400, 401, 404, 413, 429, 503), summary="Queue one job; fetch it later")
async def submit(model: str, body: JobRequest, request: Request) -> Response:
    service = request.app.state.service
    model, inputs, params = service.check_job(model, body.inputs, body.params)
    [job_id] = await service.enqueue(model, [inputs], params, priority=body.priority, deadline_s=body.deadline_s)
    url = f"/v1/jobs/{job_id}"
    payload = {"job_id": job_id, "model": model, "status": "queued", "url": url}
    return Response(json.dumps(payload), status_code=202, media_type="application/json",
                    headers={"Location": url})


@router.get("/v1/jobs/{job_id}", response_model=JobView, responses=_errors(401, 404, 503),
            summary="A job's status, result and timings")
async def job(job_id: str, request: Request) -> Response:
    view = await request.app.state.service.job(job_id)
    return Response(json.dumps(view, separators=(",", ":")), media_type="application/json")
