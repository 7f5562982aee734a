"""A Celery consumer that dead-letters what it cannot run, instead of logging and dropping it.

Before any of Celery's handling, the admission rules of :mod:`workers.admission` apply:
a message naming any task but this worker's own (``elastiq.infer``) -- Celery's built-in
``celery.*`` tasks included -- is refused, and a queue item over the size limit is
refused before it is JSON-decoded (see :func:`install_envelope_guard`).

Celery's defaults: an undecodable body (bad JSON, a disallowed content type such as
pickle) is logged and acked; a message with no task header, or an invalid one, is
rejected; an unknown task name is rejected and marked failed with NotRegistered; and a
body of the wrong shape raises out of the message handler. Here every one of these is
acked and recorded in the dead-letter list with its reason (``elastiq status`` shows
them); when the message carries a task id, that id also gets a typed failure
(DeadLetteredError) in the result backend, so a waiting client is answered. Nothing is
executed, and the worker keeps consuming.

Installed with ``worker_consumer="workers.consumer:Consumer"`` (workers/main.py).
"""

from __future__ import annotations

import logging

from celery.utils.collections import AttributeDict
from celery.worker.consumer.consumer import Consumer as CeleryConsumer

from elastiq import contract
from elastiq.errors import DeadLetteredError
from elastiq.settings import Limits
from workers.admission import id_hint, size_refusal, task_refusal
from workers.deadletter import MAX_BODY_PREVIEW, dead_letter

log = logging.getLogger(__name__)
_app = {}          # the running consumer's Celery app, for refusals outside the consumer


def _redis():
    from workers import tasks

    ctx = tasks._context
    return ctx.redis if ctx is not None else None


def _headers(message) -> dict:
    try:
        h = message.headers
        return h if isinstance(h, dict) else {}
    except Exception:  # noqa: BLE001
        return {}


def shape_problem(message) -> str | None:
    """What is wrong with a decodable protocol-2 message for ``elastiq.infer``, or None.

    Checked before Celery builds a request: a body that is not ``[args, kwargs, embed]``
    fails *outside* the task, where Celery neither acks nor answers it (the message comes
    back after every visibility timeout, forever). Only this worker's own task names run
    (:func:`workers.admission.task_refusal`), and never with callbacks, errbacks, chains or
    chords (the client sends none), so a raw message cannot reach Celery's built-in tasks
    or fan out to others.
    """
    headers = message.headers
    if not isinstance(headers, dict) or "task" not in headers:
        return None                      # Celery's unknown-message path
    refusal = task_refusal(headers["task"])
    if refusal:
        return refusal
    if not isinstance(headers.get("id"), str) or not headers["id"]:
        return "task message without a string id header"
    if headers.get("chord") or headers.get("group_index") is not None:
        return "chords and groups are not accepted"
    body = message.payload
    if not isinstance(body, (list, tuple)) or len(body) != 3:
        return "the body is not [args, kwargs, embed]"
    args, kwargs, embed = body
    if not isinstance(args, (list, tuple)):
        return "the task args are not a list"
    if not isinstance(kwargs, dict):
        return "the task kwargs are not a mapping"
    if embed is not None and not isinstance(embed, dict):
        return "the embed part is not a mapping"
    if embed and any(embed.get(k) for k in ("callbacks", "errbacks", "chain", "chord")):
        return "callbacks, errbacks, chains and chords are not accepted"
    return None


def answer_refused(app, job_id: str | None, task, reason: str) -> None:
    """Store DeadLetteredError(reason) as the result of ``job_id``, so its client is answered."""
    if not job_id or app is None:
        return
    try:
        request = AttributeDict(name=task if isinstance(task, str) else None, chord=None,
                                root_id=None, correlation_id=job_id, reply_to=None,
                                errbacks=None, ignore_result=False, group=None,
                                parent_id=None, delivery_info={})
        app.backend.mark_as_failure(job_id, DeadLetteredError(reason), request=request)
    except Exception:  # noqa: BLE001
        log.exception("could not store the failure of %s", job_id)


class Consumer(CeleryConsumer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _app["app"] = self.app

    def refuse(self, message, reason: str, ack: bool = True) -> None:
        """Dead-letter ``message`` with ``reason``; answer its task id if it has one."""
        headers = _headers(message)
        job_id = headers.get("id")
        job_id = job_id if isinstance(job_id, str) and 0 < len(job_id) <= 200 else None
        task = headers.get("task")
        try:
            content_type = message.content_type
        except Exception:  # noqa: BLE001
            content_type = None
        routing = {}
        try:
            routing = message.delivery_info or {}
        except Exception:  # noqa: BLE001
            pass
        queue = routing.get("routing_key") if isinstance(routing, dict) else None
        model = contract.model_of(queue) if isinstance(queue, str) else None
        try:
            r = _redis()
            if r is not None:
                dead_letter(r, job_id, model, reason, headers, body=getattr(message, "body", None),
                            content_type=content_type, task=task if isinstance(task, str) else repr(task),
                            queue=queue)
        except Exception:  # noqa: BLE001 - the message must still leave the queue
            log.exception("could not dead-letter a refused message")
        answer_refused(self.app, job_id, task, reason)
        try:
            if ack:
                message.ack()
            else:
                message.reject(requeue=False)
        except Exception:  # noqa: BLE001
            log.exception("could not ack a refused message")

    def on_decode_error(self, message, exc):
        self.refuse(message, f"undecodable message ({type(exc).__name__}: {str(exc)[:300]}); not run")

    def on_unknown_message(self, body, message):
        self.refuse(message, "not a task message (no task header); not run")

    def on_unknown_task(self, body, message, exc):
        name = _headers(message).get("task")
        self.refuse(message, f"unknown task {str(name)[:200]!r} (this worker runs only "
                             f"{contract.TASK_NAME!r}); not run")

    def on_invalid_task(self, body, message, exc):
        self.refuse(message, f"invalid task message ({type(exc).__name__}: {str(exc)[:300]}); not run")

    def create_task_handler(self, *args, **kwargs):
        handler = super().create_task_handler(*args, **kwargs)
        # kombu's Redis transport counts KeyError as a connection error: a message with no
        # ``id`` header would then restart the consumer (and the message) in a loop
        errors = tuple(e for e in self.connection_errors if not issubclass(e, LookupError))

        def on_task_received(message):
            headers = _headers(message)
            if "task" in headers and task_refusal(headers["task"]):
                return self.refuse(message, f"{task_refusal(headers['task'])}; not run")
            try:
                problem = shape_problem(message)
            except Exception:  # noqa: BLE001 - undecodable: Celery's own path classifies it
                problem = None
            if problem:
                return self.refuse(message, f"{problem}; not run")
            try:
                return handler(message)
            except Exception as exc:  # noqa: BLE001 - a malformed body must not stop consuming
                if isinstance(exc, errors) and not isinstance(exc, LookupError):
                    raise
                log.warning("refusing a malformed message: %s: %s", type(exc).__name__, exc)
                self.refuse(message, f"malformed task message ({type(exc).__name__}: {str(exc)[:300]}); not run")

        return on_task_received


def _valid_envelope(payload) -> str | None:
    """None if kombu can build a Message from ``payload``; else what is wrong with it."""
    if not isinstance(payload, dict):
        return f"the queue item is a JSON {type(payload).__name__}, not a kombu message"
    props = payload.get("properties")
    if not isinstance(props, dict):
        return "the queue item has no 'properties' mapping"
    if not isinstance(props.get("delivery_info"), dict) or "delivery_tag" not in props:
        return "the queue item has no delivery_info/delivery_tag"
    if payload.get("headers") is not None and not isinstance(payload.get("headers"), dict):
        return "the queue item's headers are not a mapping"
    if not isinstance(payload.get("body", ""), (str, bytes)):
        return "the queue item's body is not a string"
    for key in ("content-type", "content-encoding"):
        if payload.get(key) is not None and not isinstance(payload.get(key), str):
            return f"the queue item's {key} is not a string"
    return None


class _Junk(dict):
    """What a refused queue item decodes to: not JSON at all, or too large to decode
    (see install_envelope_guard)."""


def install_envelope_guard(limits: Limits | None = None) -> None:
    """Dead-letter queue items that are too large, or not kombu messages at all.

    An item over :func:`workers.admission.max_item_bytes` is refused before it is decoded:
    dead-lettered with a bounded preview, and its job (id read from the envelope's tail)
    answered DeadLetteredError.

    kombu decodes each item popped from a Redis list and builds a Message from it in
    its own event loop, before Celery sees anything: an item that is not JSON, or JSON
    of the wrong shape, raises there and the worker stops ("Unrecoverable error"). This
    wraps the two steps: the item is already off the list, so it is recorded and dropped.
    """
    from kombu.transport import redis as kredis
    from kombu.transport.virtual import base

    if getattr(base.Transport._deliver, "_elastiq_guard", False):
        return
    strict_loads = kredis.loads
    limits = limits or Limits()

    def tolerant_loads(s, *args, **kwargs):
        too_big = size_refusal(s, limits) if isinstance(s, (str, bytes)) else None
        if too_big:
            return _Junk(raw=s[:MAX_BODY_PREVIEW], reason=too_big, job_id=id_hint(s))
        try:
            return strict_loads(s, *args, **kwargs)
        except (ValueError, TypeError):
            return _Junk(raw=s if isinstance(s, str) else repr(s))

    original = base.Transport._deliver

    def _deliver(self, message, queue):
        junk = isinstance(message, _Junk)
        problem = message.get("reason", "the queue item is not JSON") if junk else _valid_envelope(message)
        if problem is None:
            return original(self, message, queue)
        job_id = message.get("job_id") if junk else None
        try:
            r = _redis()
            if r is not None:
                dead_letter(r, job_id, contract.model_of(queue) if isinstance(queue, str) else None,
                            f"{problem}; dropped, not run", body=message.get("raw") if junk else message,
                            queue=queue)
        except Exception:  # noqa: BLE001
            log.exception("could not dead-letter a junk queue item")
        answer_refused(_app.get("app"), job_id, None, f"{problem}; dropped, not run")
        return None

    _deliver._elastiq_guard = True
    kredis.loads = tolerant_loads
    base.Transport._deliver = _deliver
