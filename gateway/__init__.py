"""The elastiq HTTP gateway: ``elastiq gateway`` (``pip install 'elastiq[gateway]'``).

A thin process in front of the client: it validates with the client's rules, queues
through the public client API (``Client.submit_many``, coalesced per event-loop tick),
and waits for results on Redis pub/sub from the event loop — no thread per request. It
never imports torch.

Why FastAPI + uvicorn: the OpenAI-compatible request/response shapes and the OpenAPI
document come from typed models (pydantic) instead of hand-written schema; it is ASGI
on asyncio, so waiting on ``redis.asyncio`` pub/sub costs a future per request, not a
thread; both are widely deployed, actively maintained, and small next to the client's
own dependencies (Celery, kombu). Plain ASGI middlewares add auth, size limits and
metrics in front of the framework, where they run before any body is read.
"""
